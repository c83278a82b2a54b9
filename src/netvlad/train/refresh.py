"""Mining across ranks: each rank mines its own block of the chunk's queries against the shared cache.

The single-process result is kept exactly: every query gets its own random generator, seeded from the run's
generator in chunk order, so which rank mines a query changes nothing; the tuples are gathered in chunk order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch.distributed as dist

from netvlad.extract.store import Shard
from netvlad.train.distributed import DistInfo
from netvlad.train.mining import MinedTuples, mine


@dataclasses.dataclass(frozen=True)
class MiningInputs:
    """What mining needs besides the cache: per chunk query, its positives and non-negatives (database ids)."""

    positives: Sequence[np.ndarray]
    non_negatives: Sequence[np.ndarray]
    previous: np.ndarray  # (Q, J) previous hard negatives, −1 padded
    num_database: int
    margin: float
    num_samples: int
    num_negatives: int


def mine_chunk(cache: np.ndarray, db_ids: np.ndarray, inputs: MiningInputs, seeds: np.ndarray,
               info: DistInfo) -> tuple[MinedTuples, np.ndarray]:
    """Mine the chunk's queries (cache rows after the ``len(db_ids)`` database rows) -> (tuples, previous).

    ``seeds`` ``(Q,)``: one generator seed per query. Rank r computes distances for its block of queries only
    (and of those, only the ~``num_samples`` per query that mining reads: memory does not grow with the cache);
    every rank returns all tuples (query positions in the chunk) and the new previous negatives ``(Q, J)``.
    """
    count = len(inputs.previous)
    rows = Shard(info.rank, info.world).rows(count) if info.active else np.arange(count)
    first = len(db_ids) + (int(rows[0]) if len(rows) else 0)  # a rank's rows are contiguous: a view, no copy
    tuples, previous = mine(cache[:len(db_ids)], cache[first:first + len(rows)], db_ids,
                            positives=[inputs.positives[i] for i in rows],
                            non_negatives=[inputs.non_negatives[i] for i in rows], previous=inputs.previous[rows],
                            rng=[np.random.default_rng(int(seeds[i])) for i in rows],
                            num_database=inputs.num_database, margin=inputs.margin, num_samples=inputs.num_samples,
                            num_negatives=inputs.num_negatives)
    tuples = dataclasses.replace(tuples, queries=rows[tuples.queries])
    if not info.active:
        return tuples, previous
    parts: list = [None] * info.world
    dist.all_gather_object(parts, (tuples, previous))  # small integer arrays, in rank (= chunk) order
    return (MinedTuples(np.concatenate([t.queries for t, _ in parts]), np.concatenate([t.positives for t, _ in parts]),
                        np.concatenate([t.negatives for t, _ in parts]), sum(t.skipped for t, _ in parts)),
            np.concatenate([p for _, p in parts]))
