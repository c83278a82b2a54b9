"""`netvlad evaluate` with a checkpoint that records its training data: held-out vs seen places, `--places A:B`."""

import csv
import json

import pytest

from netvlad.cli.main import main
from netvlad.data import open_dataset
from netvlad.data.provenance import Provenance
from netvlad.models import read_checkpoint
from netvlad.train import train
from tests.conftest import copy_sequence, shared_dataset
from tests.train.conftest import tiny_config

PLACES, VAL = 60, 20  # real Nordland thumbnails: the first 60 places, the last 20 held out for validation
EVAL = ["--database", "summer", "--queries", "winter", "--no-progress", "--device", "cpu", "--workers", "0",
        "--engine", "torch", "--no-pictures"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(sequence folder, checkpoint): a tiny model trained a few iterations on places 0:40, validated on 40:60."""
    source = shared_dataset("nordland")
    names = sorted(p.name for p in (source / "summer").iterdir())[:PLACES]
    root = copy_sequence(source, tmp_path_factory.mktemp("nordland"), ("summer", "winter"), names)
    dataset = open_dataset(root, database="summer", queries="winter")
    config = tiny_config(epochs=1, val_places=VAL, epoch_queries=6, cluster_images=40, whitening_dim=None)
    return root, train(config, dataset, tmp_path_factory.mktemp("run"))


def test_checkpoint_records_what_it_was_trained_and_validated_on(trained):
    root, model = trained
    provenance = Provenance.from_extra(read_checkpoint(model, tensors=False)[2])
    assert provenance.train["places"] == f"0:{PLACES - VAL}" and provenance.val["places"] == f"{PLACES - VAL}:{PLACES}"
    assert provenance.train["database"]["root"] == str((root / "summer").resolve())
    assert provenance.train["queries"]["images"] == PLACES - VAL and provenance.val["queries"]["images"] == VAL
    assert provenance.source["places"] == f"0:{PLACES}" and provenance.seed == 0 and len(provenance.config_hash) == 16
    assert read_checkpoint(model.parent / "init.safetensors", tensors=False)[2]["provenance"] == provenance.to_dict()


def _recall_by_hand(rows, n: int) -> float:
    """Percent of queries whose own place (same file name) is among the top ``n``: ±0 frames, as Nordland's."""
    return 100.0 * sum(r["query"] in [r[f"top{i}"] for i in range(1, n + 1)] for r in rows) / len(rows)


def test_held_out_and_seen_places_are_scored_apart(trained, tmp_path, capsys, caplog):
    root, model = trained
    out = tmp_path / "report.json"
    assert main(["evaluate", str(root), *EVAL, "--model", str(model), "--output", str(out)]) == 0
    parts = json.loads(out.read_text())["recall_by_training_use"]
    with open(out.with_name("report_queries.csv")) as handle:
        rows = list(csv.DictReader(handle))
    order = sorted(r["query"] for r in rows)  # the place is the file's rank among the sequence's names
    seen = [r for r in rows if order.index(r["query"]) < PLACES - VAL]
    held = [r for r in rows if order.index(r["query"]) >= PLACES - VAL]
    assert parts["seen in training"]["num_queries"] == len(seen) == PLACES - VAL
    assert parts["held out"]["num_queries"] == len(held) == VAL
    for n in (1, 5):
        assert parts["seen in training"]["recall"][str(n)] == pytest.approx(_recall_by_hand(seen, n))
        assert parts["held out"]["recall"][str(n)] == pytest.approx(_recall_by_hand(held, n))
    printed = capsys.readouterr().out
    assert f"| held out | {VAL} |" in printed and f"| seen in training | {PLACES - VAL} |" in printed
    warnings = [r for r in caplog.records if "mixes seen and held-out places" in r.getMessage()]
    assert len(warnings) == 1 and f"--places {PLACES - VAL}:{PLACES}" in warnings[0].getMessage()


def test_places_keeps_the_held_out_range_only(trained, tmp_path, capsys, caplog):
    root, model = trained
    out = tmp_path / "held.json"
    assert main(["evaluate", str(root), *EVAL, "--model", str(model), "--places", f"{PLACES - VAL}:{PLACES}",
                 "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["num_queries"] == VAL and report["num_database"] == VAL
    assert report["recall_by_training_use"]["held out"]["num_queries"] == VAL
    assert "seen in training" not in report["recall_by_training_use"]
    assert "mixes seen" not in caplog.text


@pytest.mark.parametrize("text", ["40", "40-60", "a:b", "60:40", "5:5", ":60", "-1:4"])
def test_malformed_place_range_is_one_line(trained, text, capsys):
    root, _ = trained
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", str(root), *EVAL, "--places", text])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("netvlad evaluate: error: argument --places")


def test_place_range_beyond_the_sequence_is_refused(trained, caplog):
    root, _ = trained
    assert main(["evaluate", str(root), *EVAL, "--places", f"50:{PLACES + 1}"]) == 1
    assert f"beyond its {PLACES} places (0:{PLACES})" in caplog.text
