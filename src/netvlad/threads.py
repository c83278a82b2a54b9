"""torch's intra-op thread count for one step, restored after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads, then restore the caller's count (also on error).

    torch's count is the process's: every thread's torch calls in the block use ``count``. Use it where the block's
    own threads share the cores (several helper threads, each calling torch), or where each call is small enough that
    waiting for a pool of threads costs more than it gains.

    Examples:
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
