"""Evaluation split into independent groups (MSLS cities): each group's queries search only its own database.

The combination is the official MSLS one: its evaluation script pools the queries of all cities and divides the
hits by their total count, so the combined Recall@N is the query-weighted mean of the per-city values (not their
plain mean).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from netvlad.constants import EVAL_RADIUS_M
from netvlad.data.dataset import GeoDataset
from netvlad.eval.recall import DEFAULT_NS, EvalResult, evaluate_descriptors, recall_at_n
from netvlad.search.index import EXACT, IndexConfig


def evaluate_groups(db: np.ndarray, queries: np.ndarray, dataset: GeoDataset, group_of: Callable[[str], str],
                    radius: float = EVAL_RADIUS_M, ns: Sequence[int] = DEFAULT_NS, index_config: IndexConfig = EXACT,
                    db_valid: np.ndarray | None = None, query_valid: np.ndarray | None = None,
                    max_memory: float | None = None) -> tuple[EvalResult, dict[str, EvalResult]]:
    """Recall@N per group and combined, from descriptors ``db`` ``(N, dim)`` and ``queries`` ``(Q, dim)``.

    ``group_of(name)`` names the group of an image (database and query names alike). Returns the combined result
    (database indices global, recall pooled over all queries) and ``{group: result}`` with group-local indices.
    """
    db_groups = np.array([group_of(n) for n in dataset.database.names], dtype=object)
    q_groups = np.array([group_of(n) for n in dataset.queries.names], dtype=object)
    k = max(ns)
    ranked = np.full((len(queries), k), -1, dtype=np.int64)
    distances = np.full((len(queries), k), np.inf, dtype=np.float32)
    positives: list[np.ndarray] = [np.empty(0, np.int64)] * len(queries)
    per_group: dict[str, EvalResult] = {}
    for group in dict.fromkeys(q_groups.tolist()):
        q_rows, db_rows = np.flatnonzero(q_groups == group), np.flatnonzero(db_groups == group)
        local = dataset.subset(q_rows, db_rows).positives(radius)
        result = evaluate_descriptors(db[db_rows], queries[q_rows], local, ns, index_config,
                                      None if db_valid is None else db_valid[db_rows],
                                      None if query_valid is None else query_valid[q_rows], k,
                                      max_memory=max_memory)
        per_group[group] = result
        width = result.ranked.shape[1]
        ranked[q_rows, :width] = np.where(result.ranked >= 0, db_rows[np.maximum(result.ranked, 0)], -1)
        distances[q_rows, :width] = result.distances
        for row, pos in zip(q_rows, local, strict=True):
            positives[row] = db_rows[pos]
    correct = np.zeros(ranked.shape, dtype=bool)
    for q, pos in enumerate(positives):
        correct[q] = np.isin(ranked[q], pos) & (ranked[q] >= 0)
    combined = EvalResult(recall=recall_at_n(ranked, positives, ns), ranked=ranked, distances=distances,
                          correct=correct, positives=positives, descriptor_dim=int(db.shape[1]),
                          num_queries=len(queries), num_database=len(db))
    return combined, per_group
