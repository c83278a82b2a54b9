"""Sequence order recorded by every reader: sequence folders, CSV columns, MSLS seq_info.csv, DVGB timestamps and
sidecar, the generated city; and the SequenceOrder record itself."""

from __future__ import annotations

import numpy as np
import pytest

from netvlad.data import DatasetError, open_dataset
from netvlad.data.sequences import SequenceOrder, frame_steps, from_names
from netvlad.data.summary import summarize
from tests.data.helpers import dvgb_name, pittsburgh_utm, write_image, write_msls


def test_order_members_gaps_and_subset():
    order = SequenceOrder.from_keys(["a", "b", "a", "a", "b"], [2, 7, 0, 4, 8])
    assert order.names == ("a", "b") and [m.tolist() for m in order.members()] == [[2, 0, 3], [1, 4]]
    assert order.gaps() == 2 and order.unsorted() == 1  # 0→2→4 steps by 2; frame 0 listed after frame 2
    sub = order.subset(np.array([4, 1]))
    assert sub.ids.tolist() == [1, 1] and sub.frames.tolist() == [8, 7] and sub.names == ("a", "b")
    assert "2 sequences, 2..3 frames" in order.describe()
    with pytest.raises(ValueError, match="2 sequence ids but 1 frame"):
        SequenceOrder(np.zeros(2), np.zeros(1))


def test_frame_numbers_from_names_and_steps():
    assert frame_steps([10, 20, 40, 30]).tolist() == [0, 1, 3, 2]
    order = from_names(["walk1/img003.jpg", "walk1/img001.jpg", "walk2/img001.jpg"])
    assert order.names == ("walk1", "walk2") and order.frames.tolist() == [3, 1, 1]
    assert from_names(["a.jpg", "b1.jpg"]) is None


def test_sequence_folders_record_frame_numbers(tmp_path):
    """Nordland-style names every 10: consecutive frames; a frame missing in both folders is a gap."""
    for side in ("summer", "winter"):
        for number in (10, 20, 30, 50):
            write_image(tmp_path / side / f"images-{number:05d}.png")
    data = open_dataset(tmp_path, database="summer", queries="winter")
    assert data.queries.sequence.frames.tolist() == [0, 1, 2, 4] and data.queries.sequence.names == ("winter",)
    assert data.database.sequence.gaps() == 1
    assert data.subset(query_indices=np.array([3, 1])).queries.sequence.frames.tolist() == [4, 1]


def test_real_nordland_is_one_sequence_per_season(nordland):
    data = open_dataset(nordland, database="summer", queries="winter")
    assert data.database.sequence.frames.tolist() == list(range(2400))
    assert data.queries.sequence.describe().startswith("1 sequence, 2400..2400 frames")


def test_csv_sequence_frame_and_time_columns(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        write_image(tmp_path / name)
    (tmp_path / "f.csv").write_text("path,split,easting,northing,sequence,frame\na.jpg,database,0,0,r1,0\n"
                                    "b.jpg,database,5,0,r1,1\nc.jpg,query,0,0,run2,4\nd.jpg,query,5,0,run2,6\n")
    data = open_dataset(tmp_path / "f.csv")
    assert data.queries.sequence.names == ("run2",) and data.queries.sequence.frames.tolist() == [4, 6]
    assert data.queries.sequence.gaps() == 1
    (tmp_path / "t.csv").write_text("path,split,easting,northing,sequence,time\na.jpg,database,0,0,r,9.5\n"
                                    "b.jpg,database,5,0,r,3.25\nc.jpg,query,0,0,q,1\nd.jpg,query,5,0,q,2\n")
    assert open_dataset(tmp_path / "t.csv").database.sequence.frames.tolist() == [1, 0]
    (tmp_path / "p.csv").write_text("path,split,easting,northing\na.jpg,database,0,0\nc.jpg,query,0,0\n")
    assert open_dataset(tmp_path / "p.csv").queries.sequence is None
    (tmp_path / "bad.csv").write_text("path,split,easting,northing,frame\na.jpg,database,0,0,x\nc.jpg,query,0,0,1\n")
    with pytest.raises(DatasetError, match=r"bad\.csv:2: frame is 'x', not a number"):
        open_dataset(tmp_path / "bad.csv")
    for value in ("1e15", "nan", "2.5", "-inf"):
        (tmp_path / "bad.csv").write_text(f"path,split,easting,northing,frame\na.jpg,database,0,0,{value}\n"
                                          "c.jpg,query,0,0,1\n")
        with pytest.raises(DatasetError, match=rf"bad\.csv:2: frame is '{value}'; it must be an integer in "
                                               r"\[-1000000000000, 1000000000000\]"):
            open_dataset(tmp_path / "bad.csv")
    (tmp_path / "bad.csv").write_text("path,split,easting,northing,sequence,time\na.jpg,database,0,0,r,nan\n"
                                      "c.jpg,query,0,0,q,1\n")
    with pytest.raises(DatasetError, match=r"bad\.csv:2: time is 'nan'; it must be a finite number"):
        open_dataset(tmp_path / "bad.csv")


def test_msls_seq_info(tmp_path):
    data = open_dataset(write_msls(tmp_path))
    order = data.queries.sequence
    assert order is not None and len(order) == len(data.queries)
    assert all(name.startswith(("cph/", "sf/")) for name in order.names)
    assert order.frames.max() <= 3  # the fixture's frame_number is i % 4, four frames per sequence


def test_dvgb_timestamps_and_sidecar(tmp_path):
    folder = tmp_path / "images" / "test"
    points = pittsburgh_utm(np.arange(6).reshape(3, 2))
    for i, (e, n) in enumerate(points):
        write_image(folder / "database" / dvgb_name(e, n, timestamp=f"{100 - i}"))
        write_image(folder / "queries" / dvgb_name(e, n))
    data = open_dataset(tmp_path)
    assert data.database.sequence.frames.tolist() == [2, 1, 0] and data.queries.sequence is None
    names = sorted(p.name for p in (folder / "queries").iterdir())
    rows = [f"test,queries,{n},s{i % 2},{i}" for i, n in enumerate(names)]
    (tmp_path / "sequences.csv").write_text("split,kind,name,sequence,frame\n" + "\n".join(rows) + "\n")
    order = open_dataset(tmp_path).queries.sequence
    assert order.names == ("s0", "s1") and order.frames.tolist() == [0, 1, 2]


def test_generated_city_records_street_passes(tmp_path):
    from netvlad.data.synthetic import CityConfig, generate_city

    root = generate_city(CityConfig.preset("tiny"), tmp_path / "city")
    data = open_dataset(root, split="test")
    db, q = data.database.sequence, data.queries.sequence
    assert db is not None and q is not None and len(db.names) >= 2
    for members in db.members():  # a street drive: consecutive frames, neighbours a few metres apart
        assert (np.diff(db.frames[members]) == 1).all()
        steps = np.linalg.norm(np.diff(data.database.utm[members], axis=0), axis=1)
        assert np.median(steps) < 3 * CityConfig.preset("tiny").spacing
    assert all(n.startswith("street") for n in q.names)


def test_inspect_shows_sequences(tmp_path):
    for side in ("a", "b"):
        for number in (1, 2, 3):
            write_image(tmp_path / side / f"f{number}.png")
    lines = summarize(open_dataset(tmp_path, database="a", queries="b"), sample=0).lines()
    assert "seq db       1 sequence, 3..3 frames (median 3), 0 gaps/repeats, 0 out of order" in lines
