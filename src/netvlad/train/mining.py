"""Hard-negative mining: best positive and hardest violating negatives per query, from the few distances needed.

Sampling candidates and selecting among them are pure functions over arrays; only the distances between each
query and its candidates are computed (``netvlad.train.pairs``), never a queries × database matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from netvlad.train.pairs import MINING_MEMORY, pair_distances


@dataclass(frozen=True)
class MinedTuples:
    """Training tuples: query, best positive and up to J hard negatives (database ids; −1 pads ``negatives``).

    Examples:
        >>> tuples = MinedTuples(np.array([4, 9]), np.array([0, 7]), np.array([[3, 5], [2, -1]]), skipped=1)
        >>> len(tuples), tuples.take(np.array([1])).negatives
        (2, array([[ 2, -1]]))
    """

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
    """Squared Euclidean distances ``(Q, D)`` × ``(M, D)`` -> ``(Q, M)`` float32, ``b`` read in row blocks.

    The full matrix, for small sets and comparisons; :func:`mine` computes only the pairs it reads.
    """
    a32 = np.asarray(a, dtype=np.float32)
    a_sq = (a32**2).sum(1, keepdims=True)
    out = np.empty((len(a32), len(b)), dtype=np.float32)
    for start in range(0, len(b), block):
        b32 = np.asarray(b[start:start + block], dtype=np.float32)
        out[:, start:start + block] = a_sq + (b32**2).sum(1)[None] - 2.0 * a32 @ b32.T
    return np.maximum(out, 0.0, out=out)


@dataclass(frozen=True)
class Candidates:
    """One query's rows to mine among (rows of the cached database): its potential positives and negative
    candidates (sampled definite negatives ∪ eligible previous hard ones, sorted)."""

    positives: np.ndarray  # (P,) rows, in the order of the query's positive ids
    negatives: np.ndarray  # (S,) rows, sorted and unique

    @property
    def rows(self) -> np.ndarray:
        """The rows whose distances mining needs ``(P + S,)``: positives first."""
        return np.concatenate([self.positives, self.negatives])


def _eligible_rows(ranks: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """The rows at ``ranks`` among the rows not in ``excluded`` (sorted, unique), without listing them all."""
    shifted = excluded - np.arange(len(excluded))  # eligible rows before each excluded one
    return ranks + np.searchsorted(shifted, ranks, side="right")


def sample_candidates(cached_ids: np.ndarray, *, positives: Sequence[np.ndarray], non_negatives: Sequence[np.ndarray],
                      previous: np.ndarray, rng: np.random.Generator | Sequence[np.random.Generator],
                      num_database: int, num_samples: int = 1000) -> list[Candidates | None]:
    """Per query, the cached rows to mine among (``None``: no cached positive or no eligible negative).

    Negatives are ``num_samples`` random cached rows outside the query's ``non_negatives`` (all of them if
    fewer), drawn with its generator, plus its ``previous`` hard negatives ``(Q, J)`` (−1 padded) that are cached
    and eligible. Work and memory per query grow with its positives, non-negatives and samples, not with the cache.

    Examples:
        >>> candidates = sample_candidates(np.arange(5), positives=[np.array([2])], non_negatives=[np.array([0, 2])],
        ...                                previous=np.full((1, 2), -1), rng=np.random.default_rng(0), num_database=5)
        >>> candidates[0].positives, candidates[0].negatives  # every database row beyond 25 m
        (array([2]), array([1, 3, 4]))
    """
    row_of = np.full(num_database, -1, dtype=np.int64)
    row_of[cached_ids] = np.arange(len(cached_ids))
    out: list[Candidates | None] = []
    for i in range(len(previous)):
        pos_rows = row_of[positives[i]]
        pos_rows = pos_rows[pos_rows >= 0]
        excluded = row_of[non_negatives[i]]
        excluded = np.unique(excluded[excluded >= 0])
        count = len(cached_ids) - len(excluded)
        if len(pos_rows) == 0 or count == 0:
            out.append(None)
            continue
        if count > num_samples:  # the same draws as choosing from the list of eligible rows
            generator = rng[i] if isinstance(rng, Sequence) else rng
            sampled = _eligible_rows(generator.choice(count, num_samples, replace=False), excluded)
        else:
            sampled = _eligible_rows(np.arange(count), excluded)
        prev_rows = row_of[previous[i][previous[i] >= 0]]
        prev_rows = prev_rows[(prev_rows >= 0) & ~np.isin(prev_rows, excluded)]
        out.append(Candidates(pos_rows, np.union1d(sampled, prev_rows)))
    return out


def select_tuples(candidates: Sequence[Candidates | None], distances: Sequence[np.ndarray], cached_ids: np.ndarray,
                  *, margin: float = 0.1, num_negatives: int = 10) -> tuple[MinedTuples, np.ndarray]:
    """Best positive and hardest violating negatives from squared distances ``distances[i]`` to ``candidates[i].rows``.

    The best positive is the nearest; the negatives are the ``num_negatives`` nearest candidates (ties: lower row
    first), kept when they violate the margin (d²(q, n) < d²(q, p) + m). Queries with none are skipped. Returns
    the tuples (database ids; row ``i`` of the inputs is query ``i``) and the new previous hard negatives ``(Q, J)``.

    Examples:
        >>> from netvlad.train import pair_distances
        >>> database = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1], [-1, 0]], dtype=np.float32)
        >>> queries = np.array([[1, 0]], dtype=np.float32)  # row 2 was taken within 10 m, rows 0 and 2 within 25 m
        >>> ground_truth = dict(positives=[np.array([2])], non_negatives=[np.array([0, 2])],
        ...                     previous=np.full((1, 2), -1), num_database=5)
        >>> candidates = sample_candidates(np.arange(5), rng=np.random.default_rng(0), **ground_truth)
        >>> distances = pair_distances(database, queries, [c.rows for c in candidates])
        >>> tuples, previous = select_tuples(candidates, distances, np.arange(5), num_negatives=2)
        >>> tuples.positives, tuples.negatives, previous
        (array([2]), array([[ 1, -1]]), array([[1, 3]]))
    """
    new_previous = np.full((len(candidates), num_negatives), -1, dtype=np.int64)
    kept, best, negs, skipped = [], [], [], 0
    for i, (c, d) in enumerate(zip(candidates, distances, strict=True)):
        if c is None:
            skipped += 1
            continue
        d_pos, d_neg = d[:len(c.positives)], d[len(c.positives):]
        order = np.argsort(d_neg, kind="stable")[:num_negatives]
        hardest = c.negatives[order]
        new_previous[i, :len(hardest)] = cached_ids[hardest]
        nearest = np.argmin(d_pos)
        violating = hardest[d_neg[order] < d_pos[nearest] + margin]  # a prefix: hardest is sorted
        if len(violating) == 0:
            skipped += 1
            continue
        padded = np.full(num_negatives, -1, dtype=np.int64)
        padded[:len(violating)] = cached_ids[violating]
        kept.append(i)
        best.append(cached_ids[c.positives[nearest]])
        negs.append(padded)
    tuples = MinedTuples(np.asarray(kept, dtype=np.int64), np.asarray(best, dtype=np.int64),
                         np.asarray(negs, dtype=np.int64).reshape(-1, num_negatives), skipped)
    return tuples, new_previous


def mine(
    database: np.ndarray,
    queries: np.ndarray,
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
    max_memory: int = MINING_MEMORY,
) -> tuple[MinedTuples, np.ndarray]:
    """Mine one tuple per query from cached descriptors: ``queries`` ``(Q, dim)`` against ``database`` ``(M, dim)``
    (float16|float32, in memory or memory-mapped), the cached database rows of ids ``cached_ids`` ``(M,)``.

    Per query: the best positive is the nearest cached potential positive; the negatives are the
    ``num_negatives`` hardest among ``num_samples`` random definite negatives plus the query's
    ``previous`` hard ones ``(Q, J)`` (−1 padded), kept when they violate the margin
    (d²(q, n) < d²(q, p) + m). Queries with none are skipped. ``rng``: one generator for all queries, or one
    per query (a query's sample then does not depend on which queries are mined with it). Only the distances
    these need are computed (:func:`sample_candidates`, :func:`~netvlad.train.pairs.pair_distances`,
    :func:`select_tuples`), within ``max_memory`` bytes of working memory whatever M. Returns the tuples
    (row ``i`` of the inputs is query ``i``) and the new previous hard negatives ``(Q, J)``.

    Shape:
        - database: ``(M, dim)``; queries: ``(Q, dim)``; cached_ids: ``(M,)``; previous: ``(Q, J)``
        - output: tuples of T ≤ Q queries (negatives ``(T, J)``) and the new previous ``(Q, J)``

    Examples:
        >>> database = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1], [-1, 0]], dtype=np.float32)
        >>> queries = np.array([[1, 0]], dtype=np.float32)  # row 2 was taken within 10 m, rows 0 and 2 within 25 m
        >>> tuples, previous = mine(database, queries, np.arange(5), positives=[np.array([2])],
        ...                         non_negatives=[np.array([0, 2])], previous=np.full((1, 2), -1),
        ...                         rng=np.random.default_rng(0), num_database=5, num_negatives=2)
        >>> tuples  # row 1 looks closer than the positive: the one hard negative
        MinedTuples(queries=array([0]), positives=array([2]), negatives=array([[ 1, -1]]), skipped=0)
    """
    candidates = sample_candidates(cached_ids, positives=positives, non_negatives=non_negatives, previous=previous,
                                   rng=rng, num_database=num_database, num_samples=num_samples)
    rows = [c.rows if c is not None else np.zeros(0, np.int64) for c in candidates]
    distances = pair_distances(database, queries, rows, max_memory)
    return select_tuples(candidates, distances, cached_ids, margin=margin, num_negatives=num_negatives)
