import threading

import numpy as np
import pytest

from netvlad.extract.row_buffer import RowBuffer
from netvlad.extract.store import DescriptorStore


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


def test_background_writes_run_while_extraction_goes_on_and_leaving_waits_for_them(tmp_path, monkeypatch):
    store = _store(tmp_path)
    started, release, writes = threading.Event(), threading.Event(), []
    original = store.write

    def slow_write(rows, values):  # a disk that syncs only when the test says so
        started.set()
        assert release.wait(10)
        writes.append(list(rows))
        original(rows, values)

    monkeypatch.setattr(store, "write", slow_write)
    with RowBuffer(store, seconds=3600, background=True) as buffer:
        buffer.add(*_rows(3))  # the first batch: its write starts at once, on the helper thread
        assert started.wait(10)
        buffer.add(*_rows(0))  # returns while that write is still under way
        assert writes == [] and DescriptorStore.open(tmp_path / "s").num_done == 0
        release.set()
    assert writes == [[3], [0]]
    assert list(DescriptorStore.open(tmp_path / "s").pending()) == [1, 2, 4]


def test_a_failed_background_write_is_raised_and_its_rows_stay_pending(tmp_path, monkeypatch):
    store = _store(tmp_path)
    original = store.write

    def failing_once(rows, values):
        monkeypatch.setattr(store, "write", original)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "write", failing_once)
    with pytest.raises(OSError, match="No space"), RowBuffer(store, seconds=3600, background=True) as buffer:
        buffer.add(*_rows(1))  # fails on the helper thread
        buffer.add(*_rows(2))  # held: the failure surfaces when the buffer writes next (here: on leaving)
    assert list(DescriptorStore.open(tmp_path / "s").pending()) == [0, 1, 2, 3, 4]


def test_unsorted_rows_land_at_their_places(tmp_path):
    store = _store(tmp_path)
    with RowBuffer(store, seconds=3600) as buffer:
        buffer.add(np.array([4, 0]), np.array([[4, -4], [0, 0]], dtype=np.float32))
        buffer.add(*_rows(2))
    np.testing.assert_array_equal(DescriptorStore.open(tmp_path / "s").load()[[0, 2, 4]], [[0, 0], [2, -2], [4, -4]])
