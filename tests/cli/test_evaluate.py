"""`netvlad evaluate` on a small real sequence: table, JSON keys, per-query CSV, plot, picture, preprocessing."""

import csv
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from netvlad.cli.main import main
from netvlad.data.images import load_image
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model


def _args(sequence, *extra):
    return ["evaluate", str(sequence), "--database", "day_left", "--queries", "day_right", "--frame-tolerance", "2",
            "--workers", "0", "--no-progress", "--recall", "1,5,10", *extra]


def test_checkpoint_preprocessing_is_used_and_report_written(sequence, tmp_path, capsys):
    model = PlaceModel(ModelConfig(pool="max", preprocessing=Preprocessing("fixed", (64, 96)))).eval()
    save_model(model, tmp_path / "m.safetensors")
    out = tmp_path / "r" / "results.json"
    assert main(_args(sequence, "--model", str(tmp_path / "m.safetensors"), "--output", str(out))) == 0
    printed = capsys.readouterr().out
    assert "R@1" in printed and "R@10" in printed
    report = json.loads(out.read_text())
    assert set(report) >= {"recall", "num_queries", "num_database", "descriptor_dim", "model"}
    assert list(report["recall"]) == ["1", "5", "10"] and (report["num_queries"], report["num_database"]) == (20, 20)
    assert report["descriptor_dim"] == 1280 and "m.safetensors" in report["model"]
    rows = list(csv.DictReader(open(tmp_path / "r" / "results_queries.csv")))
    assert len(rows) == 20
    assert report["recall"]["1"] == pytest.approx(100 * np.mean([int(r["correct_at_1"]) for r in rows]))
    # The CSV distance is the one the checkpoint's fixed 64×96 preprocessing gives, computed independently here.
    row = rows[3]
    with torch.no_grad():
        q, d = (model(load_image(sequence / side / name, "fixed", (64, 96))[None])[0]
                for side, name in (("day_right", row["query"]), ("day_left", row["top1"])))
    assert float(row["dist1"]) == pytest.approx(float((q - d).norm()), abs=1e-4)
    for name in ("results_recall.png", "results_pr.png", "results_retrievals.png"):
        with Image.open(tmp_path / "r" / name) as image:
            assert image.width > 100 and image.height > 100
    # PR of the top-1 matches, recomputed from the CSV by sorting queries on distance (no ties here)
    order = sorted(rows, key=lambda r: float(r["dist1"]))
    hits = np.cumsum([int(r["correct_at_1"]) for r in order])
    with_positive = sum(int(r["num_positives"]) > 0 for r in rows)
    precision, recall = hits / np.arange(1, len(rows) + 1), hits / with_positive
    assert report["pr_auc"] == pytest.approx(float((np.diff(recall, prepend=0) * precision).sum()), abs=1e-5)
    perfect = recall[precision == 1]
    assert report["recall_at_100_precision"] == pytest.approx(100 * (perfect.max() if len(perfect) else 0), abs=1e-3)
    assert "recall_at_99_precision" in report and "PR AUC" in printed


def test_off_the_shelf_netvlad_is_clustered_on_the_database(sequence, tmp_path, caplog):
    out = tmp_path / "nv.json"
    with caplog.at_level(logging.INFO):
        assert main(_args(sequence, "--backbone", "mobilenet_v2", "--pool", "netvlad", "--clusters", "8",
                          "--resize", "longest", "--size", "96", "--output", str(out), "--no-pictures")) == 0
    assert "clustering local descriptors of 20 database images" in caplog.text
    assert "initialised 8 clusters" in caplog.text
    report = json.loads(out.read_text())
    assert report["descriptor_dim"] == 8 * 1280 and 0 <= report["recall"]["1"] <= report["recall"]["10"] <= 100


def test_second_off_the_shelf_evaluate_reuses_the_cached_clusters(sequence, tmp_path, caplog):
    argv = _args(sequence, "--pool", "netvlad", "--clusters", "8", "--resize", "fixed", "--size", "64", "96",
                 "--store", str(tmp_path / "store"), "--no-pictures")
    reports = []
    for run in range(2):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert main([*argv, "--output", str(tmp_path / f"r{run}.json")]) == 0
        reports.append(json.loads((tmp_path / f"r{run}.json").read_text()))
    assert "reused the cached k-means centroids" in caplog.text and "clustering local descriptors" not in caplog.text
    assert "--model CKPT" in caplog.text  # the explicit way: `netvlad cluster` once, then --model
    assert reports[0]["recall"] == reports[1]["recall"] and reports[0]["model"] == reports[1]["model"]


def test_bad_recall_values_are_refused(sequence, capsys):
    with pytest.raises(SystemExit):
        main(_args(sequence, "--recall", "1,x"))
    assert "comma-separated" in capsys.readouterr().err
