"""`netvlad stream`'s default loop-closure decision on the Gardens Point walk: day_left (frames 0–199, no revisit)
then day_right (frames 200–399, the same places from the other side of the path), 1 fps, --exclude-recent 60,
off-the-shelf MobileNetV2 + GeM, no threshold and no ground truth given to the decision."""

import json

import pytest

from netvlad import PlaceDatabase
from netvlad.cli.main import main
from netvlad.places.loop_closure import LoopClosureConfig
from tests.conftest import shared_dataset

MODEL = ["--backbone", "mobilenet_v2", "--pool", "gem", "--resize", "longest", "--size", "320", "--device", "cpu",
         "--engine", "torch", "--no-progress", "--threads", "1"]
RULE = LoopClosureConfig()


@pytest.mark.parametrize("sequence", [[], ["--sequence", "10"]], ids=["single-frame", "sequence-10"])
def test_the_walk_closes_the_second_traverse_and_nothing_in_the_first(tmp_path, capsys, sequence):
    """Single frame too: a frame's nearest neighbour a few frames off its place is closed to where the last
    frames line up (measured: 154 closures single frame, 169 with --sequence 10, none wrong)."""
    gardens = shared_dataset("gardens_point")
    assert main(["data", "route", str(gardens / "day_left"), str(gardens / "day_right"),
                 "--out", str(tmp_path / "walk")]) == 0
    out, summary = tmp_path / "walk.jsonl", tmp_path / "summary.json"
    assert main(["stream", str(tmp_path / "walk" / "frames"), "--exclude-recent", "60", "--radius", "2",
                 *sequence, "--out", str(out), "--summary", str(summary), *MODEL]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 400
    assert not any(line["loop_closure"] for line in lines[:200])  # a one-way walk: nothing to close
    assert all(line["match"] is not None for line in lines[60:])  # every frame still reports its best match
    closures = [line for line in lines[200:] if line["loop_closure"]]
    right = [line for line in closures if abs(int(line["match"][:6]) - (line["frame"] - 200)) <= 2]
    assert len(right) == len(closures) >= 150  # ≥ 75 % of the second traverse, none wrong
    for line in closures:  # what a pose graph needs of each closure
        assert line["match_time"] == int(line["match"][:6]) and line["position_distance"] <= 2
        assert line["inliers"] >= RULE.min_inliers and line["consistency"] >= RULE.min_consistency
        assert line["distinctiveness"] >= RULE.min_distinctiveness and line["support"] >= RULE.min_support
        assert 0 < line["ratio"] < 1
    report = json.loads(summary.read_text())
    assert report["decision"] == {"accepted": len(closures), "true": len(closures), "false": 0, "precision": 100.0,
                                  "recall": round(100 * len(closures) / 200, 2)}
    assert "0 false; precision 100.0 %" in capsys.readouterr().err


def _part(frames, out, rows):
    """A frames folder of ``rows`` (a slice) of ``frames``'s frames.csv, its images linked."""
    lines = (frames / "frames.csv").read_text().splitlines()
    out.mkdir()
    (out / "frames.csv").write_text("\n".join([lines[0], *lines[1:][rows]]) + "\n")
    for line in lines[1:][rows]:
        name = line.split(",")[0]
        (out / name).symlink_to((frames / name).resolve())
    return out


def test_a_resumed_stream_closes_as_the_uninterrupted_one(tmp_path):
    """A quarter of the walk's places (every 4th frame, 50 per traverse): the stream stopped after frame 64 (saved
    with --save, local features included) and resumed on the rest gives every frame the uninterrupted stream's
    closure once its window has filled again (10 frames): the same matches, inliers and decisions."""
    gardens = shared_dataset("gardens_point")
    assert main(["data", "route", str(gardens / "day_left"), str(gardens / "day_right"), "--every", "4",
                 "--out", str(tmp_path / "walk")]) == 0
    frames = tmp_path / "walk" / "frames"
    options = ["--exclude-recent", "15", "--radius", "8", *MODEL]
    assert main(["stream", str(frames), "--out", str(tmp_path / "whole.jsonl"), *options]) == 0
    assert main(["stream", str(_part(frames, tmp_path / "first", slice(0, 65))), "--save", str(tmp_path / "db"),
                 "--out", str(tmp_path / "first.jsonl"), *options]) == 0
    assert main(["stream", str(_part(frames, tmp_path / "rest", slice(65, None))), "--resume", str(tmp_path / "db"),
                 "--save", str(tmp_path / "db"), "--out", str(tmp_path / "rest.jsonl"), *options]) == 0
    whole = [json.loads(line) for line in (tmp_path / "whole.jsonl").read_text().splitlines()]
    rest = [json.loads(line) for line in (tmp_path / "rest.jsonl").read_text().splitlines()]
    keys = ("time", "match", "distance", "loop_closure", "inliers", "null_inliers", "consistency")
    assert [[line[k] for k in keys] for line in rest[10:]] == [[line[k] for k in keys] for line in whole[75:]]
    assert sum(line["loop_closure"] for line in rest[10:]) >= 15  # the check had closures to get right (24 of 25)
    assert PlaceDatabase.load(tmp_path / "db").count == 100 and rest[0]["time"] == whole[65]["time"]
