"""Training-set preparation: usable queries, and the bad-input errors (no GPS, no positive-and-negative query)."""

import numpy as np
import pytest

from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.train import holdout_last, prepare_training_set


def _dataset(db_xy, q_xy, frames=False):
    db_xy, q_xy = np.asarray(db_xy, float), np.asarray(q_xy, float)
    db = ImageList("/nowhere", tuple(f"d{i}.png" for i in range(len(db_xy))), db_xy,
                   frames=np.arange(len(db_xy)) if frames else None)
    q = ImageList("/nowhere", tuple(f"q{i}.png" for i in range(len(q_xy))), q_xy,
                  frames=np.arange(len(q_xy)) if frames else None)
    return GeoDataset("toy", db, q)


def test_usable_queries_need_a_positive_and_a_negative():
    # query 0 at 5 m from db 0; query 1 has nothing within 10 m; query 2 is within 10 m of db 2 only
    ds = _dataset([[0, 0], [100, 0], [200, 0]], [[5, 0], [50, 0], [203, 0]])
    data = prepare_training_set(ds, 10.0, 25.0)
    assert data.query_ids.tolist() == [0, 2]
    assert [p.tolist() for p in data.positives] == [[0], [], [2]]
    assert [n.tolist() for n in data.non_negatives] == [[0], [], [2]]


def test_no_usable_query_is_a_clear_error():
    ds = _dataset([[0, 0], [3, 0]], [[2, 0]])  # every database image is within 25 m: no negative
    with pytest.raises(ValueError, match=r"toy: no query has both a potential positive \(within 10 m\)"):
        prepare_training_set(ds)


def test_missing_gps_is_a_clear_error():
    ds = _dataset([[0, 0], [np.nan, np.nan]], [[1, 0]])
    with pytest.raises(ValueError, match="toy: training needs a GPS/UTM position for every image, but 1 of 2 database"):
        prepare_training_set(ds)


def test_holdout_last_places():
    ds = _dataset(np.arange(10)[:, None] * [30, 0], np.arange(10)[:, None] * [30, 0] + [1, 0])
    train, val = holdout_last(ds, 3)
    assert (len(train.database), len(train.queries), len(val.database), len(val.queries)) == (7, 7, 3, 3)
    assert val.database.names[0] == "d7.png" and val.queries.names[-1] == "q9.png"
    seq_train, seq_val = holdout_last(_dataset(np.zeros((10, 2)), np.zeros((10, 2)), frames=True), 4)
    assert len(seq_val.queries) == 4 and seq_val.database.frames.tolist() == [6, 7, 8, 9]
    with pytest.raises(ValueError, match="hold out"):
        holdout_last(ds, 10)
