"""Frame sources: folder order, timestamps in names, frames.csv, fps; two traverses as one route."""

import numpy as np
import pytest
from PIL import Image

from netvlad.data.frames import FrameSource
from netvlad.data.route import RouteConfig, write_route
from netvlad.errors import BadInputError


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(folder / name)
    return folder


def test_timestamped_names_are_sorted_and_timed(tmp_path):
    folder = _images(tmp_path / "ns", ["1403636580000000000.png", "1403636579500000000.png"])
    frames = list(FrameSource(folder))
    assert [f.name for f in frames] == ["1403636579500000000.png", "1403636580000000000.png"]
    assert frames[1].time - frames[0].time == pytest.approx(0.5)
    folder = _images(tmp_path / "s", ["12.50.png", "3.25.png"])
    assert [f.time for f in FrameSource(folder)] == [3.25, 12.5]


def test_fps_or_frame_counts_and_every(tmp_path, caplog):
    folder = _images(tmp_path / "f", [f"Image{i:03d}.jpg" for i in range(7)])
    assert [(f.index, f.time) for f in FrameSource(folder, every=3, fps=2.0)] == [(0, 0.0), (3, 1.5), (6, 3.0)]
    source = FrameSource(folder, every=2)
    assert [f.time for f in source] == [0, 2, 4, 6] and "frame counts" in caplog.text and source.duration() == 6
    assert len(source) == 4
    with pytest.raises(BadInputError, match="every"):
        FrameSource(folder, every=0)
    with pytest.raises(BadInputError, match="one image"):
        FrameSource(folder / "Image000.jpg")


def test_route_lays_out_both_traverses_with_positions(tmp_path):
    names = [f"Image{i:03d}.jpg" for i in range(6)]
    first, second = _images(tmp_path / "left", names), _images(tmp_path / "right", names)
    frames = write_route(first, second, tmp_path / "route", RouteConfig(every=2, spacing=5.0, fps=4.0))
    source = FrameSource(frames)
    listed = list(source)
    assert source.has_positions and [f.name for f in listed] == [f"{i:06d}.jpg" for i in range(6)]
    assert [f.position[0] for f in listed] == [0, 5, 10, 0, 5, 10] and listed[4].time == 1.0
    assert np.array_equal(np.asarray(listed[4].image), np.asarray(Image.open(second / "Image002.jpg")))
    (second / "Image004.jpg").unlink()
    with pytest.raises(BadInputError, match="lacks 1"):
        write_route(first, second, tmp_path / "route2")
    with pytest.raises(BadInputError, match="not empty"):
        write_route(first, first, tmp_path / "route")


@pytest.mark.parametrize("row", ["b.png,nan,0,0", "b.png,1,inf,0", "b.png,1e999,0,0"])
def test_a_frames_csv_with_a_non_finite_number_is_refused_naming_the_line(tmp_path, row):
    folder = _images(tmp_path / "f", ["a.png", "b.png"])
    (folder / "frames.csv").write_text(f"name,time,easting,northing\na.png,0,0,0\n{row}\n")
    with pytest.raises(BadInputError, match=r"frames\.csv:3: time, easting and northing must be finite"):
        list(FrameSource(folder))
