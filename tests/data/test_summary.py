"""``summarize``: the figures ``netvlad data inspect`` prints."""

from __future__ import annotations

import pytest

from netvlad.data import ImageDecodeError, open_dataset
from netvlad.data.summary import summarize
from tests.data.helpers import write_image


def gps_set(tmp_path):
    for name, size in (("a.jpg", (40, 30)), ("b.jpg", (40, 30)), ("c.png", (64, 32)), ("q1.jpg", (40, 30)),
                       ("q2.jpg", (40, 30))):
        write_image(tmp_path / name, size=size)
    (tmp_path / "m.csv").write_text("path,split,easting,northing\n"
                                    "a.jpg,database,0,0\nb.jpg,database,10,0\nc.png,database,100,50\n"
                                    "q1.jpg,query,5,0\nq2.jpg,query,1000,0\n")
    return open_dataset(tmp_path / "m.csv")


def test_counts_extent_positives_and_sizes(tmp_path):
    summary = summarize(gps_set(tmp_path), radius=25.0)
    assert (summary.num_database, summary.num_queries) == (3, 2)
    assert summary.extent["db"] == (0.0, 0.0, 100.0, 50.0) and summary.extent["query"] == (5.0, 0.0, 1000.0, 0.0)
    assert summary.queries_without_positive == 1 and summary.first_without_positive == "q2.jpg"
    assert summary.mean_positives == 1.0  # q1 has a and b, q2 none
    assert summary.sizes["db"] == {(30, 40): 2, (32, 64): 1} and summary.sampled["query"] == 2
    text = "\n".join(summary.lines())
    assert "no positive  1 of 2 queries (first: q2.jpg)" in text and "40×30 (2), 64×32 (1)" in text


def test_sampling_reads_only_some_sizes(tmp_path):
    summary = summarize(gps_set(tmp_path), sample=2)
    assert summary.sampled["db"] == 2 and sum(summary.sizes["db"].values()) == 2


def test_unreadable_image_fails_or_is_counted(tmp_path):
    data = gps_set(tmp_path)
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"b\.jpg: image file is empty"):
        summarize(data)
    summary = summarize(data, skip_bad=True)
    assert len(summary.unreadable) == 1 and "unreadable   1 (first:" in "\n".join(summary.lines())


def test_nordland_figures(nordland):
    summary = summarize(open_dataset(nordland, database="summer", queries="winter"), sample=20)
    assert (summary.num_database, summary.queries_without_positive, summary.mean_positives) == (2400, 0, 1.0)
    assert summary.sizes["db"] == {(32, 64): 20}
    text = "\n".join(summary.lines())
    assert "frames db    0 .. 2399 (0.0 .. 59975.0 m along the route at the assumed spacing)" in text
    assert "±0 frames (25 m per frame, assumed: the frames carry no positions" in text
    given = summarize(open_dataset(nordland, database="summer", queries="winter", spacing=10.0), sample=1)
    assert not given.spacing_assumed and "assumed" not in "\n".join(given.lines())  # a spacing given is data
    assert "(0.0 .. 23990.0 m along the route)" in "\n".join(given.lines())
