import numpy as np
import pytest

from netvlad.eval.row_buffer import RowBuffer
from netvlad.eval.store import DescriptorStore


def _store(tmp_path):
    return DescriptorStore.create(tmp_path / "s", [f"{i}.jpg" for i in range(5)], dim=2, fingerprint="f")


def _rows(i):
    return np.array([i]), np.array([[i, -i]], dtype=np.float32)


def test_rows_wait_in_memory_until_flushed_then_land_in_one_write(tmp_path, monkeypatch):
    store = _store(tmp_path)
    writes = []
    original = store.write
    monkeypatch.setattr(store, "write", lambda rows, values: (writes.append(list(rows)), original(rows, values)))
    with RowBuffer(store, seconds=3600) as buffer:
        for i in (3, 0, 1):
            buffer.add(*_rows(i))
        assert writes == [[3]] and DescriptorStore.open(tmp_path / "s").num_done == 1  # the first batch at once
    assert writes == [[3], [0, 1]]
    again = DescriptorStore.open(tmp_path / "s")
    assert list(again.pending()) == [2, 4]
    np.testing.assert_array_equal(again.load()[[0, 1, 3]], [[0, 0], [1, -1], [3, -3]])


def test_rows_are_written_when_extraction_stops_with_an_error(tmp_path):
    store = _store(tmp_path)
    with pytest.raises(KeyboardInterrupt), RowBuffer(store, seconds=3600) as buffer:
        buffer.add(*_rows(2))
        raise KeyboardInterrupt
    assert list(DescriptorStore.open(tmp_path / "s").pending()) == [0, 1, 3, 4]


@pytest.mark.parametrize("limits", [dict(seconds=0.0), dict(seconds=3600, max_bytes=8)])
def test_time_or_size_limit_writes_at_each_add(tmp_path, limits):
    store = _store(tmp_path)
    buffer = RowBuffer(store, **limits)
    buffer.add(*_rows(4))  # 8 bytes: one row reaches the size limit
    assert list(DescriptorStore.open(tmp_path / "s").pending()) == [0, 1, 2, 3]
