"""Delta descriptors (Garg, Harwood & Milford, RA-L 2020): per frame, the mean descriptor of the later half of its
window minus the mean of the earlier half, L2-normalised. Training-free; searched like any global descriptor."""

from __future__ import annotations

import numpy as np

from netvlad.data.sequences import SequenceOrder
from netvlad.match.sequence import SequenceConfig
from netvlad.search.exact import read_rows

CHUNK = 256  # frames computed at a time: memory is (CHUNK + L) × D, never the whole sequence


def delta_window(rows: np.ndarray) -> np.ndarray:
    """The Delta descriptor (D,) of one window of descriptors (K, D) in frame order (zeros when K < 2)."""
    half = len(rows) // 2
    if half == 0:
        return np.zeros(rows.shape[1], np.float32)
    delta = rows[len(rows) - half:].mean(axis=0) - rows[:half].mean(axis=0)
    norm = np.linalg.norm(delta)
    return (delta / norm if norm > 0 else delta).astype(np.float32)


def _sequence_deltas(descriptors: np.ndarray, members: np.ndarray, before: int, after: int, out: np.ndarray) -> None:
    """Delta descriptors of one sequence (``members`` in frame order) written into ``out`` rows, chunk by chunk,
    with prefix sums over the chunk and its margins."""
    n = len(members)
    for a in range(0, n, CHUNK):
        b = min(n, a + CHUNK)
        lo, hi = max(0, a - before), min(n, b + after)
        rows = read_rows(descriptors, members[lo:hi]).astype(np.float64)
        sums = np.concatenate([np.zeros((1, rows.shape[1])), np.cumsum(rows, axis=0)])
        for t in range(a, b):
            start, stop = max(0, t - before), min(n, t + after + 1)
            half = (stop - start) // 2
            if half == 0:
                out[members[t]] = 0.0
                continue
            late = (sums[stop - lo] - sums[stop - half - lo]) / half
            early = (sums[start + half - lo] - sums[start - lo]) / half
            delta = late - early
            norm = np.linalg.norm(delta)
            out[members[t]] = delta / norm if norm > 0 else delta


def delta_descriptors(descriptors: np.ndarray, order: SequenceOrder | None, config: SequenceConfig) -> np.ndarray:
    """Delta descriptors (N, D) float32 of ``descriptors`` (N, D) over windows of ``config.length`` frames of each
    sequence (causal: ending at the frame; centred: around it), shortened at sequence ends; ``order`` None: one
    sequence in list order."""
    if order is None:
        order = SequenceOrder.single(np.arange(len(descriptors)))
    out = np.zeros((len(descriptors), descriptors.shape[1]), np.float32)
    for members in order.members():
        _sequence_deltas(descriptors, members, config.before, config.after, out)
    return out
