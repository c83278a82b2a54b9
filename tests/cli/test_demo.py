"""`netvlad demo`: a tiny end-to-end run (city → clusters → training → evaluation → report), and its parts."""

import contextlib
import io
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from netvlad.cli.main import main
from netvlad.data import GeoDataset, ImageList, open_dataset
from netvlad.pipeline import DemoConfig
from netvlad.pipeline.report import recall_table
from netvlad.pipeline.sources import open_given, split_by_place

METHODS = ["f_max (off-the-shelf)", "GeM (off-the-shelf)", "NetVLAD k-means (off-the-shelf)", "NetVLAD trained",
           "NetVLAD trained + whitening"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One tiny demo run: (output folder, printed text)."""
    out = tmp_path_factory.mktemp("demo")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NETVLAD_OFFLINE", "1")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(["demo", "--preset", "tiny", "--out", str(out), "--device", "cpu", "--no-progress"])
    torch.set_num_threads(threads)
    assert code == 0
    return out, printed.getvalue()


@pytest.mark.slow  # the tiny demo run they share takes ~15 s
def test_demo_writes_report_and_prints_table(demo):
    out, printed = demo
    report = out / "report"
    results = json.loads((report / "results.json").read_text())
    assert list(results["methods"]) == METHODS
    for line, method in zip(printed.splitlines()[1:6], METHODS, strict=True):
        r = results["methods"][method]["recall"]
        assert line.split() == [*method.split(), str(results["methods"][method]["descriptor_dim"]),
                                f"{r['1']:.1f}", f"{r['5']:.1f}", f"{r['10']:.1f}"]
    index = (report / "index.md").read_text()
    for name in ("recall.png", "training.png", "retrievals_trained.jpg"):
        assert f"]({name})" in index
        with Image.open(report / name) as image:
            assert image.width > 100 and image.height > 100
    assert all(f"| {m} |" in index for m in METHODS)
    # the report states the k-means sample that ran (recorded by the clusters step), not the one asked for
    from netvlad.models.io import read_checkpoint

    ran = read_checkpoint(out / "clusters" / "kmeans.safetensors", tensors=False)[2]["kmeans_descriptors"]
    assert 0 < ran <= DemoConfig.preset("tiny").train_config.cluster_descriptors
    assert f"clusters from k-means on {ran:,} local descriptors;" in index
    assert set(results["timings"]) == {"data", "clusters", "training", "evaluation", "report", "total"}
    # Recall@N per query condition (the city's names carry them): the counts add up and pool back to the whole
    for method in METHODS:
        entry = results["methods"][method]
        per = entry["recall_by_condition"]
        assert set(per) <= {"dusk", "night", "winter", "autumn", "rain", "fog"} and len(per) > 1
        total = sum(c["num_queries"] for c in per.values())
        assert total == entry["num_queries"]
        pooled = sum(c["recall"]["1"] * c["num_queries"] for c in per.values()) / total
        assert abs(pooled - entry["recall"]["1"]) < 1e-6
    assert "## Recall@N per query condition" in index


def _run(out, *flags):
    """Rerun the tiny demo into ``out``: (exit code, printed text)."""
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("NETVLAD_OFFLINE", "1")
        code = main(["demo", "--preset", "tiny", "--out", str(out), "--device", "cpu", "--no-progress",
                     "--threads", "1", *flags])
    return code, printed.getvalue()


CHECKPOINTS = ("clusters/kmeans.safetensors", "run/best.safetensors", "run/model.safetensors")


def _outputs(out):
    """Every checkpoint's tensors, the evaluation's rankings and the printed recalls of a demo folder."""
    tensors = {name: load_file(str(out / name)) for name in CHECKPOINTS}
    ranked = {p.name: np.load(p)["ranked"] for p in sorted((out / "evaluation").glob("*.npz"))}
    methods = json.loads((out / "report" / "results.json").read_text())["methods"]
    return tensors, ranked, {m: r["recall"] for m, r in methods.items()}


def _same(a, b):
    (ta, ra, recall_a), (tb, rb, recall_b) = a, b
    assert all(ta[n].keys() == tb[n].keys() and all(torch.equal(ta[n][k], tb[n][k]) for k in ta[n]) for n in ta)
    assert ra.keys() == rb.keys() and all(np.array_equal(ra[k], rb[k]) for k in ra) and len(ra) == 5
    assert recall_a == recall_b


@pytest.mark.slow  # reruns the tiny demo once more (~15 s)
def test_demo_rerun_skips_finished_steps_and_force_reproduces_them_bit_for_bit(demo, caplog):
    """Same seed, same thread count: a forced second run rewrites bit-identical weights and Recall@N."""
    out, printed = demo
    assert "seed 0, 1 torch thread" in printed
    first = _outputs(out)
    caplog.set_level(logging.INFO)
    code, again = _run(out)
    assert code == 0 and again.splitlines()[:6] == printed.splitlines()[:6]
    for step in ("clusters", "training", "evaluation", "localisation"):
        assert f"step {step}: outputs up to date (same inputs), skipped" in caplog.text
    caplog.clear()
    code, forced = _run(out, "--force")
    assert code == 0 and "skipped" not in caplog.text and "removing the previous training run" in caplog.text
    assert forced.splitlines()[:6] == printed.splitlines()[:6]
    _same(first, _outputs(out))


@pytest.mark.slow  # the tiny demo run they share takes ~15 s
def test_demo_continues_an_interrupted_training(demo, caplog):
    out, printed = demo
    first = _outputs(out)
    record = out / "steps" / "training.json"
    record.write_text(json.dumps(json.loads(record.read_text()) | {"complete": False}))  # died after its last epoch
    (out / "run" / "model.safetensors").unlink()
    caplog.set_level(logging.INFO)
    code, again = _run(out)
    assert code == 0 and "training (resumed)" in caplog.text
    assert "step evaluation: outputs up to date" in caplog.text  # the same weights: nothing else to redo
    _same(first, _outputs(out))


@pytest.mark.slow  # the tiny demo run they share takes ~15 s
def test_demo_recalls_match_its_test_split(demo):
    out, _ = demo
    results = json.loads((out / "report" / "results.json").read_text())
    test = open_dataset(out / "city", split="test")
    dims = {m: results["methods"][m]["descriptor_dim"] for m in METHODS}
    assert dims["f_max (off-the-shelf)"] == dims["GeM (off-the-shelf)"] == 1280
    assert dims["NetVLAD trained"] == 4 * 1280 and dims["NetVLAD trained + whitening"] == 8
    for method in METHODS:
        summary = results["methods"][method]
        assert summary["num_queries"] == len(test.queries) and summary["num_database"] == len(test.database)
        recalls = [summary["recall"][str(n)] for n in (1, 2, 5, 10, 20)]
        assert recalls == sorted(recalls)  # Recall@N never falls with N
        assert all(100 * k / len(test.queries) == pytest.approx(r) for r in recalls
                   for k in [round(r * len(test.queries) / 100)])  # whole queries


@pytest.mark.slow  # the tiny demo run they share takes ~15 s
def test_demo_localisation_error_is_the_distance_to_the_recorded_position(demo):
    out, _ = demo
    results = json.loads((out / "report" / "results.json").read_text())
    test = open_dataset(out / "city", split="test")
    recorded = dict(zip(test.queries.names, test.queries.utm, strict=True))
    assert len(results["localisation"]) == 2
    for item in results["localisation"]:
        east, north = (float(v) for v in item["query"].split("@")[1:3])  # the DVGB name holds the recorded UTM
        assert np.allclose(recorded[item["query"]], (east, north), atol=0.01)
        assert item["error"] == pytest.approx(np.hypot(item["estimate"][0] - east, item["estimate"][1] - north),
                                              abs=0.02)


@pytest.mark.slow  # the tiny demo run they share takes ~15 s
def test_demo_on_given_city_uses_its_splits(demo):
    out, _ = demo
    data = open_given(DemoConfig.preset("tiny", data=str(out / "city")))
    assert "train split" in data.source and "test split" in data.source and data.val is not None
    assert set(data.train.database.names).isdisjoint(data.test.database.names)
    assert len(data.test.queries) == len(open_dataset(out / "city", split="test").queries)


def _line_dataset(count: int) -> GeoDataset:
    """Database and queries every 10 m along a line heading north-east (no images needed)."""
    along = np.arange(count) * 10.0
    utm = np.stack([500_000 + along * 0.6, 5_000_000 + along * 0.8], 1)
    names = tuple(f"{i:03d}.jpg" for i in range(count))
    return GeoDataset("line", ImageList("db", names, utm), ImageList("q", names, utm + 1.0))


def test_split_by_place_leaves_a_gap_along_the_main_axis():
    train, test = split_by_place(_line_dataset(50), test_share=0.4, gap=25.0)
    cut = 0.6 * 49 * 10.0  # 294 m: where the database's 60 % quantile lies along the line
    for part, inside in ((train, lambda s: s < cut - 12.5), (test, lambda s: s > cut + 12.5)):
        for side in (part.database, part.queries):
            along = np.hypot(*(side.utm - [500_000, 5_000_000]).T)
            assert len(side) and all(inside(s) for s in along)
    assert len(train.database) + len(test.database) == 50 - 2  # 290 and 300 m fall in the 25 m gap
    assert train.database.names[0] == "000.jpg" and test.database.names[-1] == "049.jpg"  # the last places test


def test_split_by_place_refuses_a_dataset_too_small():
    with pytest.raises(ValueError, match="too small"):
        split_by_place(_line_dataset(2), test_share=0.4, gap=25.0)


def test_recall_table_rows():
    class Result:
        recall, descriptor_dim = {1: 12.5, 5: 50.0, 10: 100.0}, 64

    assert recall_table({"a": Result()}).splitlines() == ["method    dim    R@1    R@5   R@10",
                                                          "a          64   12.5   50.0  100.0"]


@pytest.mark.parametrize("change", [{"size": (16, 64)}, {"test_share": 1.0}, {"lr": 0.0, "epochs": 0}])
def test_config_refuses_bad_values(change):
    with pytest.raises(ValueError):
        DemoConfig(**change)


def test_missing_data_is_a_one_line_error(tmp_path, caplog):
    assert main(["demo", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 1
    assert "nowhere: dataset not found" in caplog.text


@pytest.mark.slow  # re-evaluates the tiny demo twice through onnxruntime (~15 s)
def test_demo_evaluates_through_onnxruntime_reproducibly(demo, caplog):
    """--engine onnxruntime redoes only the evaluation; the same seed, threads and engine give the same rankings.

    Last of the tests sharing ``demo``: it rewrites that folder's evaluation."""
    import shutil

    pytest.importorskip("onnxruntime")
    out = demo[0]
    by_torch = _outputs(out)
    caplog.set_level(logging.INFO)
    code, printed = _run(out, "--engine", "onnxruntime")
    assert code == 0 and "evaluated by onnxruntime" in printed
    assert "step training: outputs up to date" in caplog.text
    assert "step evaluation: outputs up to date" not in caplog.text
    first = _outputs(out)
    assert json.loads((out / "report" / "results.json").read_text())["engine"] == "onnxruntime"
    for method, recall in first[2].items():  # descriptors within 1e-5 of torch's: the same Recall@N
        assert recall == by_torch[2][method], method
    shutil.rmtree(out / "evaluation")
    code, _ = _run(out, "--engine", "onnxruntime")
    assert code == 0
    again = _outputs(out)
    assert all(np.array_equal(first[1][k], again[1][k]) for k in first[1]) and first[2] == again[2]
