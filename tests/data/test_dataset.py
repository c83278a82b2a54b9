"""GeoDataset ground truth (evaluation, training, non-negatives), subsets and the sequence split."""

from __future__ import annotations

import numpy as np
import pytest

from netvlad.data import GeoDataset, ImageList
from netvlad.data.info import DatasetInfo


def brute(q: np.ndarray, db: np.ndarray, radius: float, min_distance: float = -1.0) -> list[list[int]]:
    d = np.sqrt(((q[:, None] - db[None]) ** 2).sum(-1))
    return [np.flatnonzero((row <= radius) & (row > min_distance)).tolist() for row in d]


@pytest.fixture
def street() -> GeoDataset:
    rng = np.random.default_rng(1)
    db = np.repeat(np.stack([np.arange(0, 300, 6.0), np.zeros(50)], 1), 2, axis=0)  # 2 images per panorama
    q = np.stack([rng.uniform(-10, 310, 40), rng.uniform(-3, 3, 40)], 1)
    q[0] = db[10]  # a query standing exactly on a database panorama
    names = [f"db{i:03d}.jpg" for i in range(len(db))]
    return GeoDataset("street", ImageList("/db", names, db), ImageList("/q", [f"q{i}.jpg" for i in range(40)], q))


def test_positives_training_positives_and_non_negatives_match_brute_force(street):
    q, db = street.queries.utm, street.database.utm
    assert [p.tolist() for p in street.positives(25.0)] == brute(q, db, 25.0)
    assert [p.tolist() for p in street.non_negatives(25.0)] == brute(q, db, 25.0)
    assert [p.tolist() for p in street.training_positives(10.0)] == brute(q, db, 10.0, 1.0)
    assert [p.tolist() for p in street.training_positives(10.0, min_distance=0)] == brute(q, db, 10.0)
    assert 10 not in street.training_positives()[0] and 10 in street.positives()[0]  # same panorama: trivial


def test_training_positives_exclude_same_capture_time():
    db = ImageList("/db", ["a", "b", "c"], [[3.0, 0], [4.0, 0], [5.0, 0]], times=[7, 8, np.nan])
    q = ImageList("/q", ["q"], [[0.0, 0.0]], times=[8])
    assert GeoDataset("tm", db, q).training_positives(10.0).__getitem__(0).tolist() == [0, 2]


def sequence(n: int = 10, tolerance: int = 1, spacing: float = 12.5) -> GeoDataset:
    frames = np.arange(n)
    utm = np.stack([frames * spacing, np.zeros(n)], 1)
    names = [f"f{i}.png" for i in range(n)]
    return GeoDataset("seq", ImageList("/a", names, utm, frames=frames), ImageList("/b", names, utm, frames=frames),
                      frame_tolerance=tolerance, info=DatasetInfo(spacing=spacing))


def test_sequence_ground_truth_uses_frames_for_evaluation_and_positions_for_training():
    seq = sequence()
    assert seq.is_sequence
    assert seq.positives(1000.0)[4].tolist() == [3, 4, 5]  # ±1 frame, whatever the radius
    assert seq.training_positives(10.0)[4].tolist() == [4]  # the same frame is the positive (no 1 m rule)
    assert seq.non_negatives(25.0)[4].tolist() == [2, 3, 4, 5, 6]  # |Δframe| · 12.5 m ≤ 25 m


def test_subset_renumbers_and_keeps_fields():
    seq = sequence()
    sub = seq.subset(query_indices=[7, 2], database_indices=np.arange(10) >= 5)
    assert sub.queries.names == ("f7.png", "f2.png") and sub.database.names[0] == "f5.png"
    assert sub.positives()[0].tolist() == [1, 2, 3] and sub.positives()[1].tolist() == []
    assert sub.frame_tolerance == 1 and sub.info == seq.info
    assert len(seq.subset(query_indices=[]).queries) == 0


def test_split_by_frames_holds_out_the_last_places():
    train, val = sequence(20).split_by_frames(4)
    assert (len(train.database), len(train.queries), len(val.database), len(val.queries)) == (16, 16, 4, 4)
    assert val.database.frames.tolist() == [16, 17, 18, 19] and train.queries.frames.max() == 15
    assert val.positives()[0].tolist() == [0, 1]  # indices re-numbered inside val
    with pytest.raises(ValueError, match="val_places"):
        sequence(5).split_by_frames(5)


def test_split_by_frames_refuses_gps_data(street):
    with pytest.raises(ValueError, match="subset"):
        street.split_by_frames(3)


def test_queries_without_positives_and_dropping_them(street, caplog):
    q = np.array([[0.0, 0.0], [5000.0, 0.0]])
    data = GeoDataset("x", street.database, ImageList("/q", ["near", "far"], q))
    assert data.queries_without_positives(25.0).tolist() == [1]
    kept = data.with_positive_queries(25.0)
    assert kept.queries.names == ("near",)
    assert "dropping 1 of 2 queries" in caplog.text and "far" in caplog.text


def test_image_list_checks_lengths_and_paths():
    with pytest.raises(ValueError, match="2 names but 1 positions"):
        ImageList("/r", ["a", "b"], [[0, 0]])
    with pytest.raises(ValueError, match="1 frames but 2 images"):
        ImageList("/r", ["a", "b"], [[0, 0], [1, 1]], frames=[0])
    images = ImageList("/r", ["a/b.jpg"], [[0, 0]])
    assert [str(p) for p in images.paths()] == ["/r/a/b.jpg"]
    assert repr(GeoDataset("n", images, images)) == "< n - #q: 1; #db: 1 >"


def test_ground_truth_refuses_nan_positions():
    images = ImageList("/r", ["a"], [[np.nan, 0.0]])
    with pytest.raises(ValueError, match="NaN"):
        GeoDataset("n", images, images).positives()


def test_panorama_ids_follow_subsets():
    db = ImageList("/db", ["a", "b", "c"], [[0.0, 0], [1.0, 0], [2.0, 0]], panoramas=[0, 0, 1])
    info = DatasetInfo(format="mat", skipped=[("x.jpg", "image file not found")], cities=["cph"],
                       query_conditions={"q": "night"})
    data = GeoDataset("d", db, ImageList("/q", ["q"], [[0.0, 0.0]]), info=info)
    assert data.subset(database_indices=[2, 0]).database.panoramas.tolist() == [1, 0]
    assert data.database.times is None  # panorama ids no longer ride on the capture times
