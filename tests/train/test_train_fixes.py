"""Issue 20 item 4: the trivial-positive rule named in the error, the progress bar per batch."""

from types import SimpleNamespace

import numpy as np
import pytest

from netvlad.train import loop, prepare_training_set
from netvlad.train.mining import MinedTuples
from tests.train.test_sets import _dataset


def test_trivial_positives_are_named_in_the_error_with_the_option():
    # each query lies 0.5 m from its only database image within 10 m: trivial under the official 1 m rule
    ds = _dataset([[0, 0], [100, 0]], [[0.5, 0], [100.5, 0]])
    with pytest.raises(ValueError, match=r"closer than 1 m .* 2 queries lost all their positives .*"
                                         r"--min-positive-distance 0"):
        prepare_training_set(ds)
    data = prepare_training_set(ds, min_positive_distance=0.0)
    assert data.query_ids.tolist() == [0, 1] and [p.tolist() for p in data.positives] == [[0], [1]]


def test_progress_bar_moves_per_batch(monkeypatch):
    def fake_batch(run, state):
        state.batch += 1
        return 0.5

    monkeypatch.setattr(loop, "train_batch", fake_batch)
    shown = []

    class Bar:
        n = 100  # 100 queries of the epoch already done

        def update(self, k):
            self.n += k
            shown.append(self.n)

        def set_postfix(self, **_):
            pass

    run = SimpleNamespace(config=SimpleNamespace(batch_tuples=4, checkpoint_every=1000),
                          log=SimpleNamespace(event=lambda *a, **k: None), save=lambda state: None)
    tuples = MinedTuples(np.arange(10), np.arange(10), np.zeros((10, 3), dtype=np.int64), 2)
    state = SimpleNamespace(tuples=tuples, batch=0, position=100, epoch=0, step=0)
    loop.train_chunk(run, state, Bar(), queries=12)  # 10 tuples from 12 queries: 3 batches
    assert shown == [104, 108, 112]
