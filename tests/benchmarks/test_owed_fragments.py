"""The benchmarks that write docs/results/city-large.md and nordland-recipe.md, run at toy sizes: their steps and
runs happen for real and the table comes from what they measured (timing itself is never asserted)."""

import json
import re
import sys

import pytest

from benchmarks import city_large, nordland_recipe
from benchmarks.__main__ import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_measure_takes_the_peak_and_cpu_of_the_whole_process_tree(tmp_path):
    grandchild = ("import time; b = bytearray(300 * 2**20); t = time.process_time()\n"
                  "while time.process_time() - t < 0.3: pass")
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}], check=True)"
    small, big = city_large.measure([[sys.executable, "-c", "pass"], [sys.executable, "-c", child]], {},
                                    tmp_path / "log")
    assert big.peak >= 300 * 2**20 > small.peak  # the grandchild's 300 MiB, not the parent's
    assert big.cpu >= 0.3 and big.wall >= big.cpu / 2


def test_a_failed_step_raises_with_the_end_of_its_log(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)failed.*exit 3 said why"):
        city_large.measure([[sys.executable, "-c", "import sys; print('exit 3 said why'); sys.exit(3)"]], {},
                           tmp_path / "log")


@pytest.mark.slow
def test_city_large_runs_every_step_on_a_tiny_city_and_resumes(tmp_path):
    keep, results = tmp_path / "work", tmp_path / "results"
    argv = ["city-large", "--size", "tiny", "--epoch-queries", "4", "--clusters", "4", "--whitening-dim", "8",
            "--engine", "torch", "--keep", str(keep), "--results", str(results)]
    assert main(argv) == 0
    text = (results / "city-large.md").read_text()
    assert text.startswith("`python -m benchmarks city-large --size tiny")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| generate", "| train, 2 ranks", "| extract with the k-means model, 2 shards at once",
        "| evaluate the k-means model from the store",
        "| evaluate the trained model (whitened 8-D), extraction included"]
    trained = json.loads((keep / "trained" / "recall.json").read_text())
    assert trained["descriptor_dim"] == 8
    assert f"| {city_large.recall(keep / 'trained' / 'recall.json')} |" in rows[-1]
    assert city_large.recall(keep / "trained" / "recall.json").split(" / ")[0] == f"{trained['recall']['1']:.1f}"
    assert "test split 10 queries" in text and re.search(r"\| [\d.]+ GB / [\d.]+ GB \|", rows[2])
    log = (keep / "commands.log").read_bytes()
    assert main(argv) == 0  # a rerun reads every step's usage back: it runs nothing
    assert (keep / "commands.log").read_bytes() == log
    assert (results / "city-large.md").read_text().split("\n", 1)[1] == text.split("\n", 1)[1]


@pytest.mark.slow
def test_nordland_recipe_runs_its_settings_and_resumes(tmp_path):
    keep, results = tmp_path / "work", tmp_path / "results"
    argv = ["nordland-recipe", "--quick", "--settings", "all", "recipe", "--seeds", "0", "--keep", str(keep),
            "--results", str(results)]
    assert main(argv) == 0
    text = (results / "nordland-recipe.md").read_text()
    assert text.splitlines()[0].endswith("seed 0.")
    for name in ("all", "recipe"):
        recall = json.loads((keep / f"{name}-seed0" / "result.json").read_text())["recall@1"]
        assert recall == nordland_recipe.final_recall(keep / f"{name}-seed0") and f"| {recall:.2f} |" in text
    assert (keep / "frozen.npz").is_file()
    (keep / "all-seed0" / "log.jsonl").unlink()  # finished runs are read back, not trained again
    assert main(argv) == 0
    assert (results / "nordland-recipe.md").read_text().split("\n", 1)[1] == text.split("\n", 1)[1]


def test_each_setting_changes_the_recipe_as_its_row_says():
    from netvlad.train.train_config import TrainConfig

    base = TrainConfig(exclude_dark_below=25, exclude_duplicates_above=0.97, epoch_queries=None)
    random = nordland_recipe.setting_config(base, "random", 1, 1000)
    assert (random.exclude_dark_below, random.exclude_duplicates_above, random.epoch_queries, random.seed) == (
        None, None, 1000, 1)
    halved = nordland_recipe.setting_config(base, "excluded-halved", 0, 1000)
    assert (halved.exclude_dark_below, halved.lr_step, halved.lr_gamma, halved.epoch_queries) == (25, 1, 0.5, 1000)
    assert nordland_recipe.setting_config(base, "recipe", 0, 1000) == TrainConfig(
        exclude_dark_below=25, exclude_duplicates_above=0.97, tensorboard=False, checkpoint_every=10**6)
