"""Items of an iterator produced ahead in a background thread: image decoding overlapped with the model's work.

PIL decodes and resizes with Python's lock released, so while the model runs on one batch a thread can decode the
next ones. The order is the iterator's, at most ``ahead`` items wait at any time (bounded memory), and an exception
the iterator raises reaches the consumer at the position it happened, after every item before it.
:func:`ordered_map` does the same for a function over items computed by several threads at once (onnxruntime
releases Python's lock too, so each thread can decode an image and run the model on it).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_END = object()
_POLL = 0.1  # seconds between checks of the consumer's stop while the queue is full


def prefetch(items: Iterable[T], ahead: int = 2) -> Iterator[T]:
    """``items`` in their order, produced by a background thread up to ``ahead`` items before they are asked for
    (``ahead`` 0: in the calling thread). Closing the returned iterator early stops the thread after the item it is
    producing."""
    if ahead <= 0:
        yield from items
        return
    box: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                box.put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there in order
            put((_END, error))

    thread = threading.Thread(target=produce, name="netvlad-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = box.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


def ordered_map(function: Callable[[T], R], items: Iterable[T], lanes: int, ahead: int) -> Iterator[R]:
    """``function`` over ``items``, run by ``lanes`` threads at once, results in the items' order; at most
    ``ahead`` (at least ``lanes``) results computed or being computed before they are asked for. An exception
    reaches the consumer at its item's position; closing the returned iterator early drops the items not started
    and waits for those running."""
    pending: deque = deque()
    with ThreadPoolExecutor(lanes, thread_name_prefix="netvlad-lane") as pool:
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= max(ahead, lanes):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
