"""``python -m benchmarks``: every benchmark is a subcommand with working ``--help``, none reaches for ``sys.path`` or
a fixed folder, and the cheapest ones run for real at toy sizes (timing itself is never asserted)."""

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from benchmarks import common
from benchmarks.__main__ import BENCHMARKS, THREADS, build_parser, main
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _thread_variables(monkeypatch):
    """``main`` pins the BLAS thread variables; restore them after each test."""
    for name in common.THREAD_VARIABLES:
        monkeypatch.setenv(name, "1")


def test_help_lists_every_benchmark_module(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert all(name in text for name in BENCHMARKS)
    modules = {m for m, _ in BENCHMARKS.values()} | {"__init__", "__main__", "common", "scale_data", "scale_steps",
                                                     "reranking_picture"}
    assert {p.stem for p in (REPO / "benchmarks").glob("*.py")} == modules  # no script outside the suite


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_has_help(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: python -m benchmarks {name}" in text
    assert ("--results DIR" in text) == (name != "gpu")  # every table can go to the docs; gpu stands alone


def test_no_path_hacks_or_fixed_folders():
    for script in (REPO / "benchmarks").glob("*.py"):
        text = script.read_text()
        assert "sys.path" not in text, script.name
        assert not re.search(r"Path\(\"/(work|tmp|home|data)", text), script.name


def test_logging_is_set_up_by_the_entry_alone():
    for script in (REPO / "benchmarks").glob("*.py"):
        if script.name != "__main__.py":
            text = script.read_text()
            assert "basicConfig" not in text and ".setLevel(" not in text, script.name


def test_the_entry_quietens_a_benchmarks_own_loggers():
    from benchmarks import learning
    from benchmarks.__main__ import set_up_logging

    set_up_logging(learning)  # conftest restores netvlad's logger levels after the test
    assert all(logging.getLogger(name).level == logging.WARNING for name in learning.QUIET_LOGGERS)


def test_threads_are_pinned_before_numpy_loads(monkeypatch):
    assert common.pin_threads(["engine", "--threads", "3", "--count", "2"]) == 3
    assert all(common.os.environ[v] == "3" for v in common.THREAD_VARIABLES)
    assert common.pin_threads(["engine"]) == 1


def test_blas_is_pinned_to_each_benchmarks_own_thread_default():
    parser = build_parser()
    defaults = {name: getattr(parser.parse_args([name]), "threads", None) for name in BENCHMARKS}
    assert {n: t for n, t in defaults.items() if isinstance(t, int) and t != 1} == THREADS


def test_work_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(common.ENV, raising=False)
    assert common.work_dir("scale-run") == Path(tempfile.gettempdir()) / "netvlad-bench" / "scale-run"
    monkeypatch.setenv(common.ENV, str(tmp_path))
    assert common.work_dir("scale-city", "city1") == tmp_path / "scale-city" / "city1"


def test_a_flag_for_another_part_is_refused():
    args = build_parser().parse_args(["engine", "--part", "models", "--threads", "1", "2"])
    with pytest.raises(SystemExit, match="--part pipeline only"):
        args.module.run(args)


@pytest.mark.parametrize("flag", ["--child", "--floor"])
def test_verify_speed_refuses_its_child_processes_flags(flag, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["verify-speed", "--end-to-end", flag])
    assert done.value.code == 2
    assert f"unrecognized arguments: {flag}" in capsys.readouterr().err


def test_verify_precision_refuses_an_unknown_set_before_any_work(tmp_path):
    args = build_parser().parse_args(["verify-precision", "--datasets", "gardens_point", "nope", "--cache",
                                      str(tmp_path / "cache")])
    with pytest.raises(SystemExit, match="--datasets: unknown nope; known: gardens_point, .*tokyo_pair"):
        args.module.run(args)
    assert not (tmp_path / "cache").exists()


def test_engine_models_runs_tiny_and_writes_its_docs_fragment(tmp_path, capsys):
    argv = ["engine", "--part", "models", "--pool", "gem", "--height", "32", "--count", "2", "--batch-sizes", "1",
            "2", "--repeats", "1", "--results", str(tmp_path)]
    assert main(argv) == 0
    lines = (tmp_path / "engine-models.md").read_text().splitlines()
    first = lines[0]
    assert first.startswith(f"`python -m benchmarks {' '.join(argv)}` — ")
    for part in ("UTC; CPU ", " thread, torch ", ", onnxruntime ", ", seed 0."):
        assert part in first, part
    rows = [line.split(" | ") for line in lines if re.match(r"\| \d", line)]
    assert [r[0] for r in rows] == ["| 1", "| 2"]
    assert all(float(r[1]) > 0 and float(r[2]) > 0 for r in rows)  # torch and onnxruntime ms per image
    assert "\n".join(lines[2:]) in capsys.readouterr().out


def test_stream_writes_stream_speed_with_its_sequence_column(tmp_path):
    """Exact search only up to --flat-max; the route added block by block is the route made whole."""
    import numpy as np

    from benchmarks.stream import route, route_blocks

    blocks = list(route_blocks(5000, np.random.default_rng(3)))
    assert [len(b) for b in blocks] == [4096, 904]
    np.testing.assert_array_equal(np.concatenate(blocks), route(5000, np.random.default_rng(3)))
    argv = ["stream", "--sizes", "300", "600", "--frames", "10", "--describe-frames", "0", "--flat-max", "300",
            "--results", str(tmp_path)]
    assert main(argv) == 0
    lines = (tmp_path / "stream-speed.md").read_text().splitlines()
    assert lines[0].startswith(f"`python -m benchmarks {' '.join(argv)}` — ") and "at normal priority" in lines[2]
    rows = [line.split(" | ") for line in lines if re.match(r"\| \d", line)]
    assert [(r[0], r[1]) for r in rows] == [("| 300", "flat"), ("| 300", "ivfpq"), ("| 600", "ivfpq")]
    assert all(r[-1].endswith("% |") for r in rows)


def test_stream_runs_sequence_scores_side_by_side_on_the_same_map_and_frames(capsys):
    """--scores: one row per score on the same map and stream frames, each named in its own column."""
    argv = ["stream", "--sizes", "300", "--frames", "12", "--describe-frames", "0", "--kinds", "flat",
            "--scores", "diagonal", "diagonal-causal-standardised"]
    assert main(argv) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if re.match(r"\| 300 \|", line)]
    assert [r[2] for r in rows][-2:] == ["diagonal", "diagonal-causal-standardised"]
    assert all(r[-1].endswith("% |") for r in rows)


def test_stream_refuses_an_unknown_score_before_any_work(monkeypatch):
    """An unknown --scores name is refused in one line naming the known ones before a frame is described or a map
    filled (at 10⁶ entries the first map takes minutes)."""
    import benchmarks.stream

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the score names were checked")

    monkeypatch.setattr(benchmarks.stream, "describe_times", no_work)
    monkeypatch.setattr(benchmarks.stream, "run_size", no_work)
    with pytest.raises(SystemExit, match="^--scores: unknown nope, delta; known: diagonal, .*seqslam$") as error:
        main(["stream", "--sizes", "1000000", "--scores", "diagonal", "nope", "delta"])
    assert "\n" not in str(error.value)


def test_sequence_with_every_dataset_skipped_writes_sequence_cost(tmp_path):
    """The scale lines alone (no model loaded): one row per dim × size, query frames per dim, R@1 in [0, 100]."""
    from benchmarks.sequence import fragment_name

    skip = ["--skip", "nordland", "gardens", "city", "seqnet"]
    argv = ["sequence", *skip, "--dim", "16", "32", "--scale-queries", "20", "12", "--sizes", "300", "--results",
            str(tmp_path)]
    assert main(argv) == 0
    lines = (tmp_path / "sequence-cost.md").read_text().splitlines()
    assert lines[0].startswith(f"`python -m benchmarks {' '.join(argv)}` — ")
    rows = [line.split(" | ") for line in lines if re.match(r"\| \d", line)]
    assert [(r[0], r[1], r[2]) for r in rows] == [("| 300", "16", "20"), ("| 300", "32", "12")]
    assert all(0 <= float(r[-2]) <= 100 and 0 <= float(r[-1].rstrip(" |")) <= 100 for r in rows)
    assert fragment_name(build_parser().parse_args(["sequence", "--skip", "nordland"])) == "sequence"
    with pytest.raises(SystemExit, match="one for each of the 2 dims"):
        main(["sequence", *skip, "--dim", "16", "32", "--scale-queries", "5", "5", "5", "--sizes", "300"])


def test_verify_sequence_takes_presets_in_order_and_refuses_an_unknown_one_before_any_work(tmp_path):
    from benchmarks.verify_sequence import run
    from netvlad.errors import BadInputError

    cache = tmp_path / "cache"
    args = build_parser().parse_args(["verify-sequence", "--preset", "speed", "storage", "--cache", str(cache)])
    assert args.preset == ["speed", "storage"]
    args.preset = ["speed", "no-such-preset"]
    with pytest.raises(BadInputError, match="no-such-preset"):
        run(args)
    assert not cache.exists()


def test_scale_names_its_fragment_after_what_it_measured():
    from benchmarks.scale import fragment_name

    args = build_parser().parse_args(["scale", "--sizes", "10000", "100000", "--dim", "1024", "--big", ""])
    assert fragment_name(args) == "scale-growth"
    assert fragment_name(build_parser().parse_args(["scale", "--sizes", "1000000", "--dim", "4096"])) == "scale-4096"
    assert fragment_name(build_parser().parse_args(["scale", "--sizes", "--big", "250000x32768"])) == \
        "scale-pittsburgh"


def test_cpu_chunk_runs_tiny_with_its_own_round_size_and_waits_passively(tmp_path, monkeypatch, capsys):
    """A model's own images a round bound its chunks (a larger one is not run: "–"); each row records the load
    average; OpenMP's waiting threads sleep (set before torch would load), unless the caller chose otherwise."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    argv = ["cpu-chunk", "--models", "mobilenet_v2:gem:32:2", "--threads", "1", "--chunks", "1", "2", "4",
            "--repeats", "1", "--results", str(tmp_path)]
    assert main(argv) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    text = (tmp_path / "cpu-chunk.md").read_text()
    assert "OMP_WAIT_POLICY=PASSIVE" in text
    row = next(line for line in text.splitlines() if line.startswith("| mobilenet_v2 + gem"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:4] == ["mobilenet_v2 + gem", "32×42", "1", "2"]
    assert cells[7] == "–" and cells[10] == "–"  # eager and traced 4 a call: more than a round's 2 images
    assert all(float(cells[i].split()[0]) > 0 for i in (4, 5, 6, 8, 9))
    assert float(cells[11]) <= 1e-5 and float(cells[12]) >= 0  # max abs difference to nchw, load average
    png = tmp_path / "chunk.png"
    assert main(["figures", "--picture", "cpu-chunk", "--fragments", str(tmp_path), "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_gpu_benchmark_runs_tiny_on_cpu(capsys):
    assert main(["gpu", "--tiny", "--device", "cpu", "--workers", "0"]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    names = [row.split(" | ")[0].lstrip("| ") for row in rows]
    for mode in ("fp32", "bf16", "bf16+channels_last"):
        assert any(f"{mode}, batch 2" in row for row in rows), mode
    for name in ("JPEG decode + resize", "whole pipeline: files → store", "bare backbone forward",
                 "pipeline / bare", "training step", "search"):
        assert name in names, name
    figures = [float(re.search(r"([\d,.]+)", row.rsplit(" | ", 1)[1]).group(1).replace(",", "")) for row in rows]
    assert all(f > 0 for f in figures)


def test_gpu_benchmark_stands_alone():
    """On a GPU machine ``python benchmarks/gpu.py`` runs with nothing else from benchmarks/."""
    text = (REPO / "benchmarks" / "gpu.py").read_text()
    assert "from benchmarks" not in text and "import benchmarks" not in text
    assert 'if __name__ == "__main__":' in text


def test_learning_benchmark_quick(tmp_path, capsys, monkeypatch):
    import json

    temporary, out = tmp_path / "tmp", tmp_path / "out"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # where its generated toy set goes
    assert main(["learning", "--quick", "--out", str(out)]) == 0
    assert not list(temporary.glob("learning-quick-*"))  # the toy set removed when the benchmark ends (torch's own
    # caches may appear there: torchinductor_USER, made once per process by whichever test first needs it)
    results = json.loads((out / "quick.json").read_text())
    assert set(results["curves"]) == {"sum", "negative_mean", "violating_mean"}
    for by_seed in results["curves"].values():
        assert set(by_seed) == {"0", "1"}
        for curve in by_seed.values():
            assert [p["queries"] for p in curve["points"]] == [0, 8, 16]
            assert all(0 <= p["r1"] <= p["r5"] <= 100 for p in curve["points"])
    # a seed's variants start from the same k-means model, so their first points agree
    assert len({c["0"]["points"][0]["r1"] for c in results["curves"].values()}) == 1
    assert "| violating_mean | 16 | 2 |" in capsys.readouterr().out


def test_layout_counts_files_lines_and_load_time_cycles(tmp_path):
    from benchmarks.layout import measure

    package = tmp_path / "netvlad" / "a"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "x.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import netvlad.a.y\n")
    (package / "y.py").write_text("import netvlad.a.x\n\n\ndef f():\n    import netvlad.a.z\n    return 1\n")
    (package / "z.py").write_text("import netvlad.a.y\n")  # y imports z only when f runs: no load-time loop
    found = measure(tmp_path)
    assert found["packages"] == {"a/": (4, 0 + 3 + 6 + 1)} and found["functions"] == 1 and found["median"] == 3
    assert found["cycles"] == [["netvlad.a.x", "netvlad.a.y"]]


def test_engine_pictures_are_drawn_from_their_fragments_tables(tmp_path, capsys):
    from benchmarks import figures

    fragment = tmp_path / "engine-pipeline.md"
    fragment.write_text("`python -m benchmarks engine` — machine line\n\n"
                        "| model | input | threads | batch | torch img/s | onnxruntime img/s | ORT ÷ torch "
                        "| export s |\n"
                        "|---|---|---|---|---|---|---|---|\n"
                        "| A | 240×320 | 1 | 1 | 24.51 | 50.57 | 2.06× | 1.1 |\n"
                        "| A | 240×320 | 1 | 8 | 17.17 | 50.25 | 2.93× | 1.1 |\n"
                        "| B | 480×640 | 1 | 1 | 1.23 | 2.12 | 1.72× | 0.9 |\n"
                        "| B | 480×640 | 2 | 1 | 2.0 | 3.5 | 1.75× | 0.9 |\n")
    assert figures.engine_speeds(figures.fragment_table(fragment)) == {
        "A at 240×320": {"1": (24.51, 50.57), "8": (17.17, 50.25)},
        "B at 480×640": {"1": (1.23, 2.12)}}  # the first thread count's rows
    png = tmp_path / "engine.png"
    assert main(["figures", "--picture", "engine-speed", "--fragments", str(tmp_path), "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in capsys.readouterr().out
    shutil.copy(REPO / "docs" / "results" / "engine-pipeline.md", tmp_path)  # the shipped tables parse and draw
    assert main(["figures", "--picture", "engine-speed", "--fragments", str(tmp_path), "--png", str(png)]) == 0
    shutil.copy(REPO / "docs" / "results" / "cpu-chunk.md", tmp_path)
    assert main(["figures", "--picture", "cpu-chunk", "--fragments", str(tmp_path), "--png", str(png)]) == 0
    with pytest.raises(SystemExit, match="drop --results"):
        main(["figures", "--picture", "cpu-chunk", "--results", str(tmp_path)])


def test_frozen_features_are_computed_once_across_processes(tmp_path, monkeypatch):
    """Two curves' processes (two fresh wrappers over one cache file): the second reads what the first wrote."""
    import numpy as np

    from benchmarks import learning
    from netvlad.train import loop
    from netvlad.train.frozen import FrozenFeatures

    calls = []

    def compute(model, paths, *args, **kwargs):
        calls.append(list(paths))
        return FrozenFeatures(paths, np.arange(len(paths) * 2, dtype=np.float32).reshape(len(paths), 2))

    images = [tmp_path / f"{i}.png" for i in range(3)]
    cache = tmp_path / "frozen.npz"
    for _ in range(2):
        monkeypatch.setattr(loop, "compute_frozen", compute)
        learning.share_frozen_features(cache)
        features = loop.compute_frozen(None, images)
        assert loop.compute_frozen(None, images) is features  # and once within a process
        np.testing.assert_array_equal(features.array[2], [4, 5])
    assert len(calls) == 1 and not (tmp_path / "frozen.partial.npz").exists()
    loop.compute_frozen(None, images[:2])  # other images: computed
    assert len(calls) == 2


def test_the_reranking_picture_reads_the_chosen_defaults_from_its_fragment(tmp_path):
    from benchmarks.reranking_picture import chosen_defaults

    # the shipped fragment names the row the leave-one-set-out choice made
    preset, weight, top = chosen_defaults(REPO / "docs" / "results" / "reranking-defaults.md")
    assert preset in ("speed", "storage", "performance") and 0 <= weight <= 1 and top >= 1
    (tmp_path / "reranking-defaults.md").write_text("`netvlad benchmark` — machine line\n\nno choice here\n")
    with pytest.raises(SystemExit, match="no 'Chosen re-ranking default' line; run netvlad benchmark --suite"):
        main(["figures", "--picture", "reranking", "--fragments", str(tmp_path), "--png", str(tmp_path / "r.png")])
    with pytest.raises(SystemExit, match="--cache is for --picture reranking"):
        main(["figures", "--picture", "cpu-chunk", "--cache", str(tmp_path)])


@pytest.mark.skipif(not (common.SHARED_DATA / "gardens_point").is_dir(), reason="Gardens Point not in shared data")
def test_verify_speed_floor_counts_the_projections_arithmetic():
    """480 px Gardens Point frames make 9 × 15 MobileNetV2 maps: 5 × 11 windows of size 5, three images a product."""
    from benchmarks.verify_speed import floor_child

    floor = floor_child()
    assert (floor["images"], floor["windows"], floor["rows"], floor["width"], floor["dim"]) == (400, 55, 165, 81920,
                                                                                                  512)
    assert floor["tflop"] == 2 * 400 * 55 * 81920 * 512 / 1e12
    assert floor["gflops"] > 0
    assert floor["floor_cpu_s"] == pytest.approx(floor["tflop"] * 1e3 / floor["gflops"])
