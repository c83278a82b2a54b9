"""Frame-synchronised sequences: the real Gardens Point and Nordland folders, and bad sequence folders."""

from __future__ import annotations

import numpy as np
import pytest

from netvlad.data import DatasetError, open_dataset
from tests.data.helpers import write_image


def test_gardens_point_loads_with_two_frame_tolerance(gardens_point):
    data = open_dataset(gardens_point, database="day_left", queries="day_right", frame_tolerance=2)
    assert (len(data.database), len(data.queries)) == (200, 200) and data.info.format == "sequence"
    assert data.database.names[7] == data.queries.names[7] == "Image007.jpg"
    assert data.database.root == gardens_point / "day_left"
    assert data.positives()[0].tolist() == [0, 1, 2] and data.positives()[100].tolist() == [98, 99, 100, 101, 102]
    spacing = data.info.spacing
    assert spacing == pytest.approx(25 / 3)
    np.testing.assert_allclose(data.queries.utm[:, 0], np.arange(200) * spacing)
    assert data.training_positives()[50].tolist() == [49, 50, 51]  # 10 m at 8.33 m per frame
    assert data.non_negatives()[50].tolist() == list(range(47, 54))  # covers every ±2 evaluation positive


def test_nordland_same_name_is_the_same_place(nordland):
    data = open_dataset(nordland, database="summer", queries="winter")
    assert (len(data.database), len(data.queries), data.frame_tolerance) == (2400, 2400, 0)
    assert data.database.names[:2] == ("images-00010.png", "images-00020.png")
    assert all(p.tolist() == [i] for i, p in enumerate(data.positives()))
    assert data.training_positives()[5].tolist() == [5] and data.non_negatives()[5].tolist() == [4, 5, 6]
    train, val = data.split_by_frames(400)
    assert (len(train.queries), len(val.database)) == (2000, 400)
    assert val.database.names[0] == "images-20010.png"


def test_nordland_with_custom_spacing(nordland):
    data = open_dataset(nordland, database="summer", queries="winter", frame_tolerance=1, spacing=5.0)
    assert data.positives()[10].tolist() == [9, 10, 11]
    assert data.training_positives(10.0)[10].tolist() == [8, 9, 10, 11, 12]


def make_sequence(root, left=("a1", "a2", "a10"), right=("a1", "a2", "a10"), ext=".png"):
    for side, names in (("left", left), ("right", right)):
        for name in names:
            write_image(root / side / f"{name}{ext}", size=(8, 4))
    return root


def test_frames_follow_natural_order(tmp_path):
    data = open_dataset(make_sequence(tmp_path), database="left", queries="right")
    assert data.database.names == ("a1.png", "a2.png", "a10.png")
    assert data.database.frames.tolist() == [0, 1, 2]


def test_unmatched_names_fail_or_are_skipped(tmp_path):
    make_sequence(tmp_path, right=("a1", "a2"))
    with pytest.raises(DatasetError, match=r"a10\.png: no frame of the same name .*1 unmatched"):
        open_dataset(tmp_path, database="left", queries="right")
    data = open_dataset(tmp_path, database="left", queries="right", skip_bad=True)
    assert len(data.database) == 2 and len(data.info.skipped) == 1


def test_the_same_folder_as_database_and_queries_warns(gardens_point, caplog):
    """Every query would find itself (R@1 100 %): the same folder on both sides is named in a warning."""
    with caplog.at_level("WARNING", logger="netvlad.data.readers"):
        open_dataset(gardens_point, database="day_left", queries="day_left")
    assert "200 of 200 queries are database images too" in caplog.text and "Image000.jpg" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="netvlad.data.readers"):
        open_dataset(gardens_point, database="day_left", queries="day_right")
    assert "database images too" not in caplog.text


def test_duplicate_frame_names(tmp_path):
    make_sequence(tmp_path)
    write_image(tmp_path / "left" / "a1.jpg", size=(8, 4))
    with pytest.raises(DatasetError, match=r"a1\.(png|jpg): same frame name as a1\.(jpg|png)"):
        open_dataset(tmp_path, database="left", queries="right")


def test_sequence_needs_folder_names_and_images(tmp_path):
    make_sequence(tmp_path)
    with pytest.raises(DatasetError, match="holding left, right; name the two as database= and queries="):
        open_dataset(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: folder holds no images"):
        open_dataset(tmp_path, format="sequence", database="left", queries="empty")


def test_bad_tolerance_and_spacing(tmp_path):
    make_sequence(tmp_path)
    with pytest.raises(DatasetError, match="frame tolerance"):
        open_dataset(tmp_path, database="left", queries="right", frame_tolerance=-1)
    with pytest.raises(DatasetError, match="spacing"):
        open_dataset(tmp_path, database="left", queries="right", spacing=0)
