"""Retrieval pictures: readable names, captions and legends; the kept epoch of a training run."""

from __future__ import annotations

import numpy as np
from PIL import Image

from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.eval.plots import correct_means, query_caption
from netvlad.eval.tiles import GREEN, GREY, Tile, compose, legend, short_name
from netvlad.pipeline.report import kept_epoch


def test_short_names_keep_the_place_and_condition_word():
    assert short_name("@0399493.88@5299186.39@33@T@047.83816@0013.65684@q00617_winter@@@@@@@@.jpg") == "q00617_winter"
    assert short_name("day_right/Image050.jpg") == "Image050"
    assert short_name("@399493.88@5299186.39@33@T@47.8@13.6@@.jpg") == "E399494 N5299186"


def _dataset(tmp_path, frame_tolerance=None) -> GeoDataset:
    for i in range(2):
        Image.new("RGB", (40, 30), (60 * i, 90, 120)).save(tmp_path / f"Image{i:03d}.jpg")
    images = ImageList(tmp_path, ("Image000.jpg", "Image001.jpg"), np.zeros((2, 2)), frames=np.arange(2))
    return GeoDataset("toy", images, images, frame_tolerance=frame_tolerance)


def test_query_captions_and_the_meaning_of_correct(tmp_path):
    dataset = _dataset(tmp_path, frame_tolerance=2)
    assert query_caption(dataset, 1, ["day", "night"]) == "query Image001 (night)"
    assert query_caption(dataset, 0) == "query Image000"
    assert correct_means(dataset) == "±2 frames"
    assert correct_means(_dataset(tmp_path), radius=25.0) == "within 25 m"


def test_a_picture_is_a_legend_over_one_captioned_row_per_query(tmp_path):
    tiles = [Tile(tmp_path / "missing.jpg", GREY, ("query a",)), Tile(tmp_path / "x.jpg", GREEN, ("#1 b", "d 0.1"))]
    key = legend([(GREY, "query"), (GREEN, "correct")], "note")
    one, two = compose([tiles], key, height=40), compose([tiles, tiles], key, height=40)
    row = two.height - one.height  # one row: its 40-pixel image in a 5-pixel frame, two caption lines, a gap
    assert row == 40 + 2 * 5 + 3 + 2 * 16 + 8 and one.height == key.height + row + 2 * 8
    assert one.getpixel((8 + 2, key.height + 16 + 2)) == GREY  # the query's frame under the legend


def test_the_kept_epoch_is_the_runs_best_else_the_first_best_recall_at_5():
    events = [{"event": "validation", "epoch": e, "recall@5": r} for e, r in ((0, 10.0), (1, 30.0), (2, 30.0))]
    assert kept_epoch(events) == 1
    assert kept_epoch([*events, {"event": "done", "best_epoch": 2}]) == 2
    assert kept_epoch([]) is None
