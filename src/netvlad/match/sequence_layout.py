"""Where trajectories may go: the database frames of each sequence in frame order, and each query frame's window of
neighbouring query frames (never across a sequence boundary)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netvlad.data.sequences import SequenceOrder


@dataclass(frozen=True, eq=False)
class DatabaseLayout:
    """Database images laid out sequence after sequence, each in frame order.

    ``order`` (N,): the image at each layout position; ``position`` (N,): each image's layout position;
    ``start`` / ``stop`` (N,): the layout positions where each image's sequence begins and ends (exclusive).
    A trajectory stepping ``s`` database frames from image ``j`` lands on ``order[position[j] + s]`` when that lies
    in ``[start[j], stop[j])``; consecutive layout positions are consecutive recorded frames, gaps included.
    """

    order: np.ndarray
    position: np.ndarray
    start: np.ndarray
    stop: np.ndarray

    @classmethod
    def from_order(cls, sequence: SequenceOrder | None, size: int | None = None) -> DatabaseLayout:
        """The layout of ``sequence`` (None: ``size`` images forming one sequence in list order)."""
        if sequence is None:
            sequence = SequenceOrder.single(np.arange(int(size or 0)))
        members = sequence.members()
        order = np.concatenate(members) if members else np.zeros(0, np.int64)
        position = np.empty(len(order), np.int64)
        position[order] = np.arange(len(order))
        start, stop = np.empty(len(order), np.int64), np.empty(len(order), np.int64)
        offset = 0
        for part in members:
            start[part], stop[part] = offset, offset + len(part)
            offset += len(part)
        return cls(order, position, start, stop)

    def __len__(self) -> int:
        return len(self.order)


@dataclass(frozen=True)
class QueryWindow:
    """Query frames scored with query ``index``: ``members`` (K,) image indices in frame order and ``offsets`` (K,)
    their frame numbers minus the current one's (negative before it); ``shortened`` when K < L, ``gap`` when two
    neighbours in the window are not one frame apart (a gap or a repeated frame)."""

    index: int
    members: np.ndarray
    offsets: np.ndarray
    shortened: bool
    gap: bool


def query_windows(order: SequenceOrder, before: int, after: int) -> list[QueryWindow]:
    """For every query image (in list order), its window of up to ``before`` frames before and ``after`` after it
    in its own sequence (frame order, stable for repeats)."""
    windows: list[QueryWindow | None] = [None] * len(order)
    for part in order.members():
        frames = order.frames[part]
        for t, index in enumerate(part):
            lo, hi = max(0, t - before), min(len(part), t + after + 1)
            window = frames[lo:hi]
            windows[int(index)] = QueryWindow(int(index), part[lo:hi], window - frames[t],
                                              hi - lo < before + after + 1, bool((np.diff(window) != 1).any()))
    return windows  # type: ignore[return-value]


@dataclass(frozen=True)
class WindowMatrix:
    """Every query's window at once: ``members`` (Q, K) image indices in frame order (−1 where the window is
    shorter), ``offsets`` (Q, K) frame numbers minus the current one's (0 where empty), ``valid`` (Q, K), the current
    frame in column ``here`` of every row; ``shortened`` / ``gaps`` (Q,) as :class:`QueryWindow`'s. Row q is query
    q (list order)."""

    members: np.ndarray
    offsets: np.ndarray
    valid: np.ndarray
    here: int
    shortened: np.ndarray
    gaps: np.ndarray


def window_matrix(order: SequenceOrder, before: int, after: int) -> WindowMatrix:
    """The windows of :func:`query_windows` as (Q, before + 1 + after) arrays, without a loop over queries."""
    width = before + 1 + after
    members = np.full((len(order), width), -1, np.int64)
    offsets = np.zeros((len(order), width), np.int64)
    for part in order.members():
        columns = np.arange(len(part))[:, None] + np.arange(-before, after + 1)
        inside = (columns >= 0) & (columns < len(part))
        picked = np.where(inside, part[np.clip(columns, 0, len(part) - 1)], -1)
        members[part] = picked
        offsets[part] = np.where(inside, order.frames[np.maximum(picked, 0)] - order.frames[part][:, None], 0)
    valid = members >= 0
    steps = np.diff(offsets, axis=1) != 1
    gaps = (steps & valid[:, 1:] & valid[:, :-1]).any(axis=1)
    return WindowMatrix(members, offsets, valid, before, valid.sum(axis=1) < width, gaps)
