"""Items produced ahead in a background thread: the iterator's order, bounded, errors in place, stopped on close."""

from __future__ import annotations

import threading
import time

import pytest

from netvlad.data.prefetch import prefetch


def test_items_come_in_order_and_at_most_ahead_wait():
    produced = []

    def items():
        for i in range(20):
            produced.append(i)
            yield i

    got = []
    for item in prefetch(items(), ahead=3):
        time.sleep(0.002)
        # the consumer holds item i; the queue holds at most 3 more, and the producer one in hand
        assert len(produced) <= item + 1 + 3 + 1
        got.append(item)
    assert got == list(range(20))


def test_an_error_reaches_the_consumer_after_every_item_before_it():
    def items():
        yield from (0, 1, 2)
        raise ValueError("Image003.jpg: cannot decode image")

    got = []
    with pytest.raises(ValueError, match="Image003.jpg"):
        for item in prefetch(items(), ahead=2):
            got.append(item)
    assert got == [0, 1, 2]


def test_closing_early_stops_the_thread():
    def items():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    stream = prefetch(items(), ahead=2)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()
    assert threading.active_count() == before


def test_ahead_zero_runs_in_the_calling_thread():
    threads = []

    def items():
        for i in range(3):
            threads.append(threading.current_thread())
            yield i

    assert list(prefetch(items(), ahead=0)) == [0, 1, 2]
    assert threads == [threading.current_thread()] * 3


def test_ordered_map_keeps_the_order_bounds_the_work_ahead_and_raises_in_place():
    from netvlad.data.prefetch import ordered_map

    started, threads = [], set()

    def slow_square(i):
        started.append(i)
        threads.add(threading.current_thread().name)
        time.sleep(0.004 * (i % 3))  # later items often finish first
        if i == 9:
            raise ValueError("Image009.jpg: cannot decode image")
        return i * i

    got = []
    with pytest.raises(ValueError, match="Image009.jpg"):
        for value in ordered_map(slow_square, range(20), lanes=2, ahead=4):
            assert len(started) <= len(got) + 1 + 4  # the one handed over and at most 4 more
            got.append(value)
    assert got == [i * i for i in range(9)] and len(threads) == 2


def test_ordered_map_closed_early_starts_nothing_more():
    from netvlad.data.prefetch import ordered_map

    started = []
    results = ordered_map(lambda i: started.append(i) or i, range(100), lanes=2, ahead=3)
    assert [next(results), next(results)] == [0, 1]
    results.close()
    count = len(started)
    time.sleep(0.05)
    assert len(started) == count <= 2 + 3 + 1
