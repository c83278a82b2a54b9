"""Precision–recall of a place recogniser's top-1 match (pure numpy): the metric loop closure is judged by.

Each query keeps its top-1 database match and a score (higher = more confident; ``-distance`` for L2 descriptors,
or a sequence score). A threshold ``t`` accepts the queries with ``score >= t``. An accepted query is a true
positive when its top-1 is one of its positives, else a false positive (a wrong loop closure), also when it has
no positive at all; a rejected query with a positive is a false negative, a rejected query without one a true
negative. Precision = TP / (TP + FP); recall = TP / (queries with a positive), as VPR-Bench (Zaffar et al., IJCV
2021) and the VPR tutorial (Schubert et al.) define them for single-best-match place recognition.

The curve has one point per distinct score (ties are accepted together, never split); queries whose score is not
finite (no descriptor, no match) are never accepted. The area is the step integral
``Σ (recall_i − recall_{i−1}) · precision_i`` from recall 0 (average precision: no interpolation, so a curve is
never credited with more than it reaches).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PRCurve:
    """Points of a PR curve, thresholds descending: ``thresholds``, ``precision``, ``recall`` ``(T,)`` in [0, 1]."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    num_queries: int
    num_with_positive: int

    @property
    def auc(self) -> float:
        """Area under the curve (step integral from recall 0), in [0, 1]."""
        if not len(self.recall):
            return 0.0
        steps = np.diff(self.recall, prepend=0.0)
        return float((steps * self.precision).sum())

    def recall_at_precision(self, precision: float) -> float:
        """Highest recall (0..1) over thresholds whose precision is at least ``precision`` (0 when none)."""
        ok = self.precision >= precision - 1e-12
        return float(self.recall[ok].max()) if ok.any() else 0.0

    def threshold_at_precision(self, precision: float) -> float | None:
        """The lowest threshold whose precision is at least ``precision`` (None when none reaches it)."""
        ok = np.flatnonzero(self.precision >= precision - 1e-12)
        return float(self.thresholds[ok[-1]]) if len(ok) else None

    def summary(self) -> dict:
        """``pr_auc`` (0..1), ``recall_at_100_precision`` and ``recall_at_99_precision`` (percent)."""
        return {"pr_auc": round(self.auc, 6),
                "recall_at_100_precision": round(100.0 * self.recall_at_precision(1.0), 4),
                "recall_at_99_precision": round(100.0 * self.recall_at_precision(0.99), 4)}


def pr_curve(scores: np.ndarray, correct: np.ndarray, has_positive: np.ndarray) -> PRCurve:
    """The PR curve of top-1 matches: ``scores`` ``(Q,)`` (higher = surer), ``correct`` ``(Q,)`` whether the top-1
    is a positive, ``has_positive`` ``(Q,)`` whether the query has any positive in the database."""
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    has_positive = np.asarray(has_positive, dtype=bool)
    if not scores.shape == correct.shape == has_positive.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape}, correct {correct.shape} and has_positive {has_positive.shape} "
                         "must be (Q,) each")
    if (correct & ~has_positive).any():
        raise ValueError("a query without positives cannot have a correct top-1")
    finite = np.isfinite(scores)
    order = np.argsort(-scores[finite], kind="stable")
    ranked, hits = scores[finite][order], correct[finite][order]
    if not len(ranked):
        empty = np.zeros(0)
        return PRCurve(empty, empty, empty, len(scores), int(has_positive.sum()))
    last_of_tie = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # accept all equal scores together
    tp = np.cumsum(hits)[last_of_tie]
    accepted = last_of_tie + 1
    total = int(has_positive.sum())
    recall = tp / total if total else np.zeros(len(tp))
    return PRCurve(ranked[last_of_tie], tp / accepted, recall.astype(np.float64), len(scores), total)


def top1_pr(distances: np.ndarray, correct: np.ndarray, positives) -> PRCurve:
    """PR curve of a ranking: ``distances`` ``(Q, k)`` L2 (score −distance of the top-1), ``correct`` ``(Q, k)``,
    ``positives`` per query (its database positives; empty: a query that should be rejected)."""
    distances, correct = np.asarray(distances), np.asarray(correct, dtype=bool)
    has_positive = np.array([len(p) > 0 for p in positives], dtype=bool)
    if distances.shape[1] == 0:
        return pr_curve(np.full(len(distances), -np.inf), np.zeros(len(distances), bool), has_positive)
    return pr_curve(-distances[:, 0].astype(np.float64), correct[:, 0], has_positive)
