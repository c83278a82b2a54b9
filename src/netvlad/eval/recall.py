"""Recall@N (pure): a query counts as correct if any of its top-N retrieved items is a positive."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def recall_at_n(ranked: np.ndarray, positives: Sequence[np.ndarray], ns: Sequence[int] = (1, 5, 10, 20)
                ) -> dict[int, float]:
    """Percent of queries with a positive in their top-N, for each N in ``ns``.

    ``ranked``: ``(Q, k)`` database indices per query, best first (k ≥ max(ns), or fewer if the
    database is smaller); ``positives``: per query, the database indices counted as correct.
    Queries with no positive at all count as failures (they are reported, not dropped).
    """
    ranked = np.asarray(ranked)
    if len(ranked) != len(positives):
        raise ValueError(f"{len(ranked)} ranked lists but {len(positives)} positive lists")
    hits = np.zeros(ranked.shape, dtype=bool)
    for q, pos in enumerate(positives):
        hits[q] = np.isin(ranked[q], pos)
    first_hit = np.where(hits.any(1), hits.argmax(1), np.iinfo(np.int64).max)
    total = max(len(ranked), 1)
    return {int(n): 100.0 * float((first_hit < n).sum()) / total for n in ns}


def recall_by_condition(ranked: np.ndarray, positives: Sequence[np.ndarray], conditions: Sequence[str],
                        ns: Sequence[int] = (1, 5, 10, 20)) -> dict[str, dict]:
    """Recall@N per capture condition: ``{condition: {"num_queries": n, "recall": {N: percent}}}``.

    ``conditions``: one label per query (``ranked`` row), e.g. ``"day"``/``"night"``; conditions are listed in
    order of first appearance. Each condition's recall is over its own queries only.
    """
    if len(conditions) != len(ranked):
        raise ValueError(f"{len(conditions)} condition labels for {len(ranked)} queries")
    labels = np.asarray(conditions, dtype=object)
    out: dict[str, dict] = {}
    for label in dict.fromkeys(labels.tolist()):
        rows = np.flatnonzero(labels == label)
        out[str(label)] = {"num_queries": int(len(rows)),
                           "recall": recall_at_n(np.asarray(ranked)[rows], [positives[i] for i in rows], ns)}
    return out
