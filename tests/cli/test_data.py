"""``netvlad data inspect`` / ``convert`` and the shared dataset arguments, through the real entry point."""

from __future__ import annotations

import argparse
import logging

from netvlad.cli.main import main
from netvlad.cli.options import add_dataset_args, dataset_from_args
from tests.data.helpers import example_dataset


def test_dataset_args_round_trip(gardens_point):
    parser = argparse.ArgumentParser()
    add_dataset_args(parser)
    args = parser.parse_args([str(gardens_point), "--database", "day_left", "--queries", "day_right",
                              "--frame-tolerance", "2", "--skip-bad"])
    data = dataset_from_args(args)
    assert data.frame_tolerance == 2 and len(data.queries) == 200


def test_inspect_prints_the_summary(gardens_point, capsys):
    assert main(["data", "inspect", str(gardens_point), "--database", "day_left", "--queries", "day_right",
                 "--frame-tolerance", "2", "--sample", "5"]) == 0
    out = capsys.readouterr().out
    assert "database     200 images" in out and "ground truth ±2 frames" in out
    assert "positives    4.97 per query" in out and "960×540 (5)" in out


def test_convert_writes_dvgb(tmp_path, capsys):
    source, _ = example_dataset("csv", tmp_path / "src")
    assert main(["data", "convert", str(source), "--out", str(tmp_path / "out"), "--copy"]) == 0
    assert "wrote 1 database and 1 query images" in capsys.readouterr().out
    assert main(["data", "inspect", str(tmp_path / "out")]) == 0


def test_bad_input_is_a_one_line_error(tmp_path, caplog):
    (tmp_path / "notes.txt").write_text("x")
    with caplog.at_level(logging.ERROR):
        assert main(["data", "inspect", str(tmp_path / "notes.txt")]) == 1
    assert "unsupported dataset format" in caplog.text
