"""Hard-negative mining (pure functions over arrays): best positive and hardest violating negatives per query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MinedTuples:
    """Training tuples: query, best positive and up to J hard negatives (database ids; −1 pads ``negatives``)."""

    queries: np.ndarray  # (T,) query ids (``mine`` returns rows of its inputs; the loop maps them to ids)
    positives: np.ndarray  # (T,) database ids
    negatives: np.ndarray  # (T, J) database ids, −1 padded
    skipped: int  # queries without a violating negative (or without a cached positive)

    def __len__(self) -> int:
        return len(self.queries)

    def take(self, rows: np.ndarray | slice) -> MinedTuples:
        """The tuples at ``rows``."""
        return MinedTuples(self.queries[rows], self.positives[rows], self.negatives[rows], 0)


def squared_distance_matrix(a: np.ndarray, b: np.ndarray, block: int = 2048) -> np.ndarray:
    """Squared Euclidean distances ``(Q, D)`` × ``(M, D)`` -> ``(Q, M)`` float32, ``b`` read in row blocks."""
    a32 = np.asarray(a, dtype=np.float32)
    a_sq = (a32**2).sum(1, keepdims=True)
    out = np.empty((len(a32), len(b)), dtype=np.float32)
    for start in range(0, len(b), block):
        b32 = np.asarray(b[start:start + block], dtype=np.float32)
        out[:, start:start + block] = a_sq + (b32**2).sum(1)[None] - 2.0 * a32 @ b32.T
    return np.maximum(out, 0.0, out=out)


def mine(
    distances: np.ndarray,
    cached_ids: np.ndarray,
    *,
    positives: Sequence[np.ndarray],
    non_negatives: Sequence[np.ndarray],
    previous: np.ndarray,
    rng: np.random.Generator | Sequence[np.random.Generator],
    num_database: int,
    margin: float = 0.1,
    num_samples: int = 1000,
    num_negatives: int = 10,
) -> tuple[MinedTuples, np.ndarray]:
    """Mine one tuple per query from cached squared distances ``(Q, M)`` to database rows ``cached_ids`` ``(M,)``.

    Per query: the best positive is the nearest cached potential positive; the negatives are the
    ``num_negatives`` hardest among ``num_samples`` random definite negatives plus the query's
    ``previous`` hard ones ``(Q, J)`` (−1 padded), kept when they violate the margin
    (d²(q, n) < d²(q, p) + m). Queries with none are skipped. ``rng``: one generator for all queries, or one
    per query (a query's sample then does not depend on which queries are mined with it). Returns the tuples
    (row ``i`` of the inputs is query ``i``) and the new previous hard negatives ``(Q, J)``.
    """
    row_of = np.full(num_database, -1, dtype=np.int64)
    row_of[cached_ids] = np.arange(len(cached_ids))
    new_previous = np.full((len(distances), num_negatives), -1, dtype=np.int64)
    kept, best, negs, skipped = [], [], [], 0
    for i, d in enumerate(distances):
        pos_rows = row_of[positives[i]]
        pos_rows = pos_rows[pos_rows >= 0]
        eligible = np.ones(len(cached_ids), dtype=bool)
        excluded = row_of[non_negatives[i]]
        eligible[excluded[excluded >= 0]] = False
        candidates = np.flatnonzero(eligible)
        if len(pos_rows) == 0 or len(candidates) == 0:
            skipped += 1
            continue
        if len(candidates) > num_samples:
            generator = rng[i] if isinstance(rng, Sequence) else rng
            candidates = generator.choice(candidates, num_samples, replace=False)
        prev_rows = row_of[previous[i][previous[i] >= 0]]
        prev_rows = prev_rows[(prev_rows >= 0) & eligible[np.maximum(prev_rows, 0)]]
        candidates = np.union1d(candidates, prev_rows)
        hardest = candidates[np.argsort(d[candidates], kind="stable")[:num_negatives]]
        new_previous[i, : len(hardest)] = cached_ids[hardest]
        positive = pos_rows[np.argmin(d[pos_rows])]
        violating = hardest[d[hardest] < d[positive] + margin]  # a prefix: hardest is sorted
        if len(violating) == 0:
            skipped += 1
            continue
        padded = np.full(num_negatives, -1, dtype=np.int64)
        padded[: len(violating)] = cached_ids[violating]
        kept.append(i)
        best.append(cached_ids[positive])
        negs.append(padded)
    tuples = MinedTuples(np.asarray(kept, dtype=np.int64), np.asarray(best, dtype=np.int64),
                         np.asarray(negs, dtype=np.int64).reshape(-1, num_negatives), skipped)
    return tuples, new_previous
