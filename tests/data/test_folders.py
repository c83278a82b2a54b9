"""A dataset, or a plain folder of photos without positions (what `index build` and `export hloc` describe)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from netvlad.data.folders import open_database, open_image_lists
from netvlad.errors import BadInputError


@pytest.fixture
def plain(tmp_path):
    for name in ("b.jpg", "a.jpg"):
        Image.new("RGB", (16, 12), (90, 30, 10)).save(tmp_path / name)
    return tmp_path


def test_a_plain_folder_is_every_image_without_positions(plain):
    [images] = open_image_lists(plain)
    assert images.names == ("a.jpg", "b.jpg") and images.root == plain and np.isnan(images.utm).all()
    assert open_database(plain).names == images.names


def test_a_reader_option_means_a_dataset_no_fallback(plain):
    with pytest.raises(BadInputError):
        open_image_lists(plain, format="dvgb")


def test_a_dataset_gives_its_database_and_queries(gardens_point):
    database, queries = open_image_lists(gardens_point, database="day_left", queries="day_right", frame_tolerance=2)
    assert len(database) == len(queries) == 200 and not np.isnan(database.utm).any()
