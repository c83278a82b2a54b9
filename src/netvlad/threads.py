"""torch's intra-op thread count for one step, restored after it, and the cores this process may use (torch is
imported when a block runs, so the command's argument parsing can ask for the cores without it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads, then restore the caller's count (also on error).

    torch's count is the process's: every thread's torch calls in the block use ``count``. Use it where the block's
    own threads share the cores (several helper threads, each calling torch), or where each call is small enough that
    waiting for a pool of threads costs more than it gains.

    Examples:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
