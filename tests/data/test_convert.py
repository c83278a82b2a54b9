"""``convert_to_dvgb``: every format round-trips through the DVGB layout with the same ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from netvlad.data import list_formats, open_dataset
from netvlad.data.convert import convert_to_dvgb
from netvlad.errors import BadInputError
from tests.data.helpers import example_dataset, pitts_struct, pittsburgh_utm, write_image, write_mat_classic


@pytest.mark.parametrize("fmt", list_formats())
def test_every_format_round_trips(tmp_path, fmt):
    source, options = example_dataset(fmt, tmp_path / "src")
    original = open_dataset(source, **options)
    if fmt == "bag":  # images inside a bag are messages, not files to link or copy
        with pytest.raises(BadInputError, match="images inside a ROS bag cannot be linked or copied"):
            convert_to_dvgb(original, tmp_path / "out")
        return
    folder = convert_to_dvgb(original, tmp_path / "out")
    assert folder == tmp_path / "out" / "images" / "test"
    again = open_dataset(tmp_path / "out")
    assert again.info.format == "dvgb"
    np.testing.assert_allclose(again.database.utm, original.database.utm, atol=0.006)
    assert [p.tolist() for p in again.positives()] == [p.tolist() for p in original.positives()]
    assert again.frame_tolerance == original.frame_tolerance
    link = next((folder / "database").iterdir())
    assert link.is_symlink() and link.resolve() == original.database.paths()[0].resolve()


def test_lat_lon_zone_and_capture_ids_are_written(tmp_path):
    for name in ("a.jpg", "b.jpg", "q.jpg"):
        write_image(tmp_path / name)
    fields = pitts_struct(["a.jpg", "b.jpg"], pittsburgh_utm([[3, 0], [5, 0]]), ["q.jpg"], pittsburgh_utm([[0, 0]]),
                          db_times=[1, 2], q_times=[2])
    original = open_dataset(write_mat_classic(tmp_path / "tm.mat", fields))
    convert_to_dvgb(original, tmp_path / "out", split="val", copy=True)
    again = open_dataset(tmp_path / "out", split="val")
    names = sorted(p.name for p in (tmp_path / "out" / "images" / "val" / "database").iterdir())
    assert names[0].split("@")[3:5] == ["", ""]  # .mat files carry no zone: left empty, as DVGB allows
    assert names[0].split("@")[7] == "1" and names[0].endswith("@a@.jpg")
    assert not (tmp_path / "out" / "images" / "val" / "database" / names[0]).is_symlink()
    assert again.training_positives()[0].tolist() == original.training_positives()[0].tolist() == [0]


def test_gardens_point_round_trips_as_a_sequence(gardens_point, tmp_path):
    original = open_dataset(gardens_point, database="day_left", queries="day_right", frame_tolerance=2)
    convert_to_dvgb(original, tmp_path / "gp")
    again = open_dataset(tmp_path / "gp")
    assert again.is_sequence and again.frame_tolerance == 2 and len(again.queries) == 200
    assert again.database.names[0].endswith("@Image000@.jpg")
    assert all(a.tolist() == b.tolist() for a, b in zip(again.positives(), original.positives(), strict=True))


def test_refuses_a_non_empty_output(tmp_path):
    source, options = example_dataset("csv", tmp_path / "src")
    data = open_dataset(source, **options)
    convert_to_dvgb(data, tmp_path / "out")
    with pytest.raises(BadInputError, match="already holds files; choose an empty output folder"):
        convert_to_dvgb(data, tmp_path / "out")
