"""Causal sequence matching by raw trajectory distance: the confidence a loop-closure decision needs.

A candidate entry ``c`` for the current frame is scored by the best constant-velocity trajectory ending at it:
frame ``t − j`` against entry ``c − round(v · j)`` for j = 0 … L−1 and each velocity v (entries per frame), as the
mean L2 distance along it (lower is better; points before the first entry or past ``count`` dropped). Unlike
SeqSLAM's contrast-normalised score (:mod:`netvlad.match`), which ranks one query's candidates well but is
not comparable across queries, this distance is: a threshold on it separates revisits from new places (measured
in ``docs/loop-closure.md``). Work per frame: O(M · V · L) distances as one ``(U, L)`` product over the union U of
the shortlist's trajectory windows, never over the map; memory: the last L descriptors.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from netvlad.search.exact import read_rows

VELOCITIES = (0.8, 0.9, 1.0, 1.1, 1.25)  # database entries per stream frame (SeqSLAM's range)
SHORTLIST = 50


class TrajectoryDistance:
    """Causal raw trajectory distances of a frame's shortlist; feed one frame per :meth:`push`."""

    def __init__(self, length: int, velocities: tuple[float, ...] = VELOCITIES, shortlist: int = SHORTLIST) -> None:
        self.length, self.shortlist = int(length), int(shortlist)
        self.velocities = np.asarray(velocities, dtype=np.float64)
        self.history: deque[np.ndarray] = deque(maxlen=self.length)

    def reset(self) -> None:
        """Forget the frames seen so far."""
        self.history.clear()

    def scores(self, candidates: np.ndarray, database: np.ndarray, count: int) -> np.ndarray:
        """Trajectory scores ``(M,)`` of ``candidates`` (ids of ``database`` rows, < ``count``; −1: none → inf).

        Each candidate's trajectories stay within the W entries before it (W = the largest step), so the distances
        needed are those of the window's K frames to the union of those entries: one small ``(U, K)`` product.
        """
        candidates = np.asarray(candidates, dtype=np.int64)
        window = np.stack(list(self.history)[::-1])  # (K, D) float32: j = 0 is the current frame
        steps = np.rint(self.velocities[:, None] * np.arange(len(window))[None]).astype(np.int64)  # (V, K) ≥ 0
        span = candidates[:, None] - np.arange(int(steps.max()) + 1)[None]  # (M, W+1): entries a trajectory visits
        inside = (span >= 0) & (span < count) & (candidates[:, None] >= 0)
        unique, inverse = np.unique(np.where(inside, span, 0), return_inverse=True)
        rows = read_rows(database, unique) if isinstance(database, np.memmap) else database[unique]
        rows = np.asarray(rows, dtype=np.float32)
        squared = (np.einsum("ud,ud->u", rows, rows)[:, None] + np.einsum("kd,kd->k", window, window)[None]
                   - 2 * rows @ window.T)
        table = np.sqrt(np.maximum(squared, 0))  # (U, K)
        where = inverse.reshape(span.shape)[:, steps]  # (M, V, K) rows of the table
        valid = inside[:, steps]
        distances = np.where(valid, table[where, np.arange(len(window))[None, None]], 0.0)
        used = valid.sum(2)
        mean = distances.sum(2) / np.maximum(used, 1)
        mean[used == 0] = np.inf
        return mean.min(axis=1)

    def push(self, descriptor: np.ndarray, candidates: np.ndarray, database: np.ndarray, count: int
             ) -> tuple[int | None, float | None]:
        """Add the current frame ``(D,)`` with its shortlist ``candidates`` ``(M,)``; -> (best id, its score), or
        (None, None) when the shortlist is empty."""
        self.history.append(np.asarray(descriptor, dtype=np.float32))
        candidates = np.asarray(candidates, dtype=np.int64)
        candidates = candidates[candidates >= 0]
        if not len(candidates):
            return None, None
        scores = self.scores(candidates, database, count)
        best = int(np.argmin(scores))
        return int(candidates[best]), float(scores[best])
