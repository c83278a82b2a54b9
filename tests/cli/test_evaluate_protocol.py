"""`netvlad evaluate --protocol`: the report records protocol, counts (with the published ones) and fed sizes;
contradicting options and datasets of another shape are refused with one line."""

from __future__ import annotations

import csv
import json
import logging
import re

import pytest

from netvlad.cli.main import main
from tests.conftest import copy_sequence, shared_dataset
from tests.data.helpers import write_image, write_msls


@pytest.fixture(scope="module")
def nordland_part(tmp_path_factory):
    return copy_sequence(shared_dataset("nordland"), tmp_path_factory.mktemp("nordland"), ("summer", "winter"),
                         [f"images-{i:05d}.png" for i in range(10, 70, 10)])


COMMON = ["--backbone", "mobilenet_v2", "--pool", "gem", "--workers", "0", "--no-progress", "--recall", "1,2"]


def test_protocol_report(nordland_part, tmp_path, one_thread):
    out = tmp_path / "r.json"
    assert main(["evaluate", str(nordland_part), "--protocol", "nordland-1", *COMMON, "--output", str(out),
                 "--no-pictures"]) == 0
    report = json.loads(out.read_text())
    assert report["protocol"]["name"] == "nordland-1" and report["protocol"]["frame_tolerance"] == 1
    assert report["counts"]["differences"]["queries"] == {"found": 6, "published": 27592}
    assert report["image_sizes"]["queries"] == {"640x480": 6} and report["image_sizes"]["resize"] == "fixed"
    rows = list(csv.DictReader(open(tmp_path / "r_queries.csv")))
    assert [int(r["num_positives"]) for r in rows] == [1] * 6  # ±1 frame of video: the same kept place only


@pytest.mark.parametrize(("extra", "message"), [
    (["--protocol", "nordland", "--frame-tolerance", "2"], "--protocol nordland sets --frame-tolerance to 10; drop"),
    (["--protocol", "nordland", "--size", "64"], "--protocol nordland feeds images .*fixed 480x640.*drop --resize"),
    (["--protocol", "tokyo247"], "protocol tokyo247 needs a mat dataset, this is sequence")])
def test_refusals(nordland_part, caplog, extra, message):
    with caplog.at_level(logging.ERROR):
        assert main(["evaluate", str(nordland_part), *COMMON, *extra]) == 1
    line = caplog.records[-1].getMessage()
    assert "\n" not in line and re.search(message, line)


def test_per_condition_recall_from_a_manifest_column(tmp_path, one_thread, capsys):
    for i in range(4):
        write_image(tmp_path / f"db{i}.jpg", size=(32, 24), colour=(60 * i, 20, 200 - 40 * i))
        write_image(tmp_path / f"q{i}.jpg", size=(32, 24), colour=(60 * i + 5, 25, 195 - 40 * i))
    lines = ["path,split,easting,northing,zone,condition"]
    lines += [f"db{i}.jpg,database,{500000 + 100 * i},4000000,17T," for i in range(4)]
    lines += [f"q{i}.jpg,query,{500000 + 100 * i},4000000,17T,{'night' if i % 2 else 'day'}" for i in range(4)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.json"
    assert main(["evaluate", str(tmp_path / "m.csv"), *COMMON, "--output", str(out), "--no-pictures"]) == 0
    assert "| condition | queries | R@1 | R@2 |" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert {k: v["num_queries"] for k, v in report["recall_by_condition"].items()} == {"day": 2, "night": 2}
    rows = list(csv.DictReader(open(tmp_path / "r_queries.csv")))
    assert [r["condition"] for r in rows] == ["day", "night", "day", "night"]
    for label, entry in report["recall_by_condition"].items():
        mine = [int(r["correct_at_1"]) for r in rows if r["condition"] == label]
        assert entry["recall"]["1"] == pytest.approx(100 * sum(mine) / len(mine))
    assert "image_sizes" in report and "protocol" not in report


def test_msls_val_per_city_and_pooled(tmp_path, one_thread, capsys):
    out = tmp_path / "msls.json"
    assert main(["evaluate", str(write_msls(tmp_path / "msls")), "--protocol", "msls-val", *COMMON, "--output",
                 str(out), "--no-pictures"]) == 0
    assert "| city | queries | database | R@1 | R@2 |" in capsys.readouterr().out
    report = json.loads(out.read_text())
    cities = report["recall_by_city"]
    assert {c: (v["num_queries"], v["num_database"]) for c, v in cities.items()} == {"cph": (5, 7), "sf": (4, 7)}
    pooled = (5 * cities["cph"]["recall"]["1"] + 4 * cities["sf"]["recall"]["1"]) / 9
    assert report["recall"]["1"] == pytest.approx(pooled, abs=1e-3) and report["cities"] == ["cph", "sf"]
    assert report["counts"]["differences"]["queries"] == {"found": 9, "published": 740}
    assert set(report["recall_by_condition"]) == {"day", "night"}
