"""`netvlad evaluate --verify`: re-ranked Recall@N in the JSON, printed table and per-query CSV; bad input."""

import csv
import json
import logging

import pytest

from netvlad.cli.main import main


def _args(sequence, *extra):
    return ["evaluate", str(sequence), "--database", "day_left", "--queries", "day_right", "--frame-tolerance", "2",
            "--workers", "0", "--no-progress", "--recall", "1,5", "--no-pictures", "--backbone", "mobilenet_v2",
            "--resize", "fixed", "--size", "192", "320", *extra]


def test_evaluate_verify_reports_reranked_recall(sequence, tmp_path, capsys, caplog):
    out = tmp_path / "r" / "results.json"
    with caplog.at_level(logging.WARNING):
        code = main(_args(sequence, "--pool", "netvlad", "--clusters", "4", "--store", str(tmp_path / "s"),
                          "--verify", "speed", "--verify-top", "30", "--output", str(out)))
    assert code == 0
    assert "clamped to the database's 20 images" in caplog.text
    printed = capsys.readouterr().out
    assert "speed (top 20)" in printed and "MB per image" in printed
    report = json.loads(out.read_text())
    assert list(report["verified_recall"]) == ["1", "5"]
    assert report["verify"]["preset"]["name"] == "speed" and report["verify"]["top"] == 20
    rows = list(csv.DictReader(open(tmp_path / "r" / "results_verified.csv")))
    assert len(rows) == 20
    assert report["verified_recall"]["1"] == pytest.approx(100 * sum(int(r["verified_correct_at_1"]) for r in rows)
                                                           / 20)
    assert report["recall"]["1"] == pytest.approx(100 * sum(int(r["global_correct_at_1"]) for r in rows) / 20)
    assert (tmp_path / "s" / "patches" / "speed" / "patches.json").is_file()


def test_verify_with_gem_is_refused_in_one_line(sequence, tmp_path, caplog):
    code = main(_args(sequence, "--pool", "gem", "--store", str(tmp_path / "s"), "--verify", "speed"))
    assert code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "pools with 'gem'; spatial re-ranking needs a NetVLAD model" in errors[0]


def test_unknown_preset_is_a_usage_error(sequence, capsys):
    with pytest.raises(SystemExit):
        main(_args(sequence, "--verify", "fastest"))
    assert "performance, speed, storage" in capsys.readouterr().err.replace("'", "")


MODEL = ["--backbone", "mobilenet_v2", "--pool", "netvlad", "--clusters", "4", "--resize", "fixed", "--size", "192",
         "320", "--workers", "0", "--no-progress"]


def test_retrieve_verify_rewrites_the_top_k(sequence, tmp_path, capsys):
    out = tmp_path / "ret"
    assert main(["retrieve", str(sequence / "day_left"), str(sequence / "day_right"), "--out", str(out), "-k", "3",
                 "--no-pictures", "--verify", "storage", "--verify-top", "10", *MODEL]) == 0
    assert "re-ranked with storage" in capsys.readouterr().out
    rows = list(csv.reader(open(out / "retrieval.csv")))
    assert len(rows) == 1 + 20 * 3 and (out / "patches" / "storage" / "patches.json").is_file()


def test_query_verify_keeps_the_same_image_first(sequence, tmp_path, capsys, monkeypatch):
    """The index is built from a relative path and queried from another directory: it records its images' absolute
    folder, so re-ranking finds them."""
    index = tmp_path / "ix"
    monkeypatch.chdir(sequence)
    assert main(["-q", "index", "build", "day_left", "--out", str(index), *MODEL]) == 0
    root = (sequence / "day_left").resolve()
    assert json.loads((index / "index.json").read_text())["root"] == str(root)
    assert json.loads((index / "descriptors" / "store.json").read_text())["root"] == str(root)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    image = sequence / "day_left" / "Image050.jpg"
    assert main(["query", str(image), "--index", "ix", "-k", "3", "--json", "--verify", "speed"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["matches"][0]["name"] == "Image050.jpg" and len(result["matches"]) == 3


def test_preset_choices_load_without_torch():
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys, netvlad.cli.options, netvlad.match.verify as v; v.get_preset('speed'); "
            "print(sorted({'torch', 'numpy', 'faiss'} & set(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"
