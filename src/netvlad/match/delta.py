"""Delta descriptors (Garg, Harwood & Milford, RA-L 2020): per frame, the sum of the later part of its window minus
the sum of the earlier part, L2-normalised. Training-free; searched like any global descriptor.

As in seqNet's ``Delta`` (the authors' code): a window of L frames weighs its first ⌊L/2⌋ frames −2/L and the rest
+2/L, so an odd L gives the middle frame to the later part (L = 5: 0.4·(x2+x3+x4) − 0.4·(x0+x1)); a window that
would run past either end of its sequence is shifted inside it to keep L frames (a sequence shorter than L is one
window of all its frames).
"""

from __future__ import annotations

import numpy as np

from netvlad.data.sequences import SequenceOrder
from netvlad.errors import BadInputError
from netvlad.match.sequence import SequenceConfig, shifted_window
from netvlad.search.exact import read_rows

CHUNK = 256  # frames computed at a time: memory is (CHUNK + L) × D, never the whole sequence


def delta_weights(length: int) -> np.ndarray:
    """seqNet's Delta weights (length,): −2/L on the first ⌊L/2⌋ frames, +2/L on the rest."""
    weights = np.full(length, 2.0 / length)
    weights[:length // 2] *= -1
    return weights


def delta_window(rows: np.ndarray) -> np.ndarray:
    """The Delta descriptor (D,) float32 of one window of descriptors (K, D) in frame order."""
    delta = delta_weights(len(rows)) @ rows.astype(np.float64)
    norm = np.linalg.norm(delta)
    return (delta / norm if norm > 0 else delta).astype(np.float32)


def _sequence_deltas(descriptors: np.ndarray, members: np.ndarray, before: int, after: int, out: np.ndarray) -> None:
    """Delta descriptors of one sequence (``members`` in frame order) written into ``out`` rows, chunk by chunk,
    with prefix sums over the chunk and its margins."""
    n = len(members)
    for a in range(0, n, CHUNK):
        b = min(n, a + CHUNK)
        spans = [shifted_window(t, n, before, after) for t in range(a, b)]
        lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
        rows = read_rows(descriptors, members[lo:hi]).astype(np.float64)
        sums = np.concatenate([np.zeros((1, rows.shape[1])), np.cumsum(rows, axis=0)])
        for t, (start, stop) in zip(range(a, b), spans, strict=True):
            middle = start + (stop - start) // 2
            delta = (sums[stop - lo] - sums[middle - lo]) - (sums[middle - lo] - sums[start - lo])
            norm = np.linalg.norm(delta)
            out[members[t]] = delta / norm if norm > 0 else delta


def shifted_windows(order: SequenceOrder, config: SequenceConfig) -> int:
    """How many frames' Delta windows were shifted inside their sequence to keep L frames (those of sequences
    shorter than L are shortened instead)."""
    length = config.before + config.after + 1
    return sum(config.before + config.after for members in order.members() if len(members) >= length)


def check_sequence_descriptors(descriptors: np.ndarray, what: str) -> np.ndarray:
    """``descriptors`` (N, D), refused in one line where a row is all zero or not finite (a window whose frames
    all have the same descriptor has no direction to give)."""
    finite = np.isfinite(descriptors).all(axis=1)
    zero = finite & ~np.any(descriptors != 0, axis=1)
    bad = np.flatnonzero(~finite | zero)
    if len(bad):
        kind = "not finite" if not finite[bad[0]] else "all zero (every frame of its window has the same descriptor)"
        raise BadInputError(f"{what}: {len(bad)} sequence descriptors are zero or not finite; the first, row "
                            f"{bad[0]}, is {kind}; remove repeated or broken frames, or use another sequence method")
    return descriptors


def delta_descriptors(descriptors: np.ndarray, order: SequenceOrder | None, config: SequenceConfig) -> np.ndarray:
    """Delta descriptors (N, D) float32 of ``descriptors`` (N, D) over windows of ``config.length`` frames of each
    sequence (causal: ending at the frame; centred: around it), shifted inside the sequence at its ends; ``order``
    None: one sequence in list order. Raises :class:`BadInputError` where a descriptor would be zero or not finite."""
    if order is None:
        order = SequenceOrder.single(np.arange(len(descriptors)))
    out = np.zeros((len(descriptors), descriptors.shape[1]), np.float32)
    for members in order.members():
        _sequence_deltas(descriptors, members, config.before, config.after, out)
    return check_sequence_descriptors(out, "Delta descriptors")
