"""Precision–recall of top-1 matches against curves computed by hand."""

import numpy as np
import pytest

from netvlad.eval.pr import pr_curve, top1_pr


def test_curve_by_hand():
    # 3 queries with a positive, 1 without; accepted in score order: hit, miss, hit, (no-positive) miss
    curve = pr_curve([0.9, 0.8, 0.7, 0.6], [True, False, True, False], [True, True, True, False])
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.8, 0.7, 0.6])
    np.testing.assert_allclose(curve.precision, [1, 1 / 2, 2 / 3, 2 / 4])
    np.testing.assert_allclose(curve.recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert curve.auc == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)
    assert curve.recall_at_precision(1.0) == pytest.approx(1 / 3)
    assert curve.recall_at_precision(0.6) == pytest.approx(2 / 3)
    assert curve.threshold_at_precision(1.0) == pytest.approx(0.9)
    assert curve.summary() == {"pr_auc": round(5 / 9, 6), "recall_at_100_precision": round(100 / 3, 4),
                               "recall_at_99_precision": round(100 / 3, 4)}


def test_ties_are_accepted_together():
    # the two 0.9s are one threshold: precision 1/2 there, so 100 % precision is never reached
    curve = pr_curve([0.9, 0.9, 0.5], [True, False, True], [True, True, True])
    np.testing.assert_allclose(curve.precision, [1 / 2, 2 / 3])
    np.testing.assert_allclose(curve.recall, [1 / 3, 2 / 3])
    assert curve.auc == pytest.approx(1 / 3 * 1 / 2 + 1 / 3 * 2 / 3)
    assert curve.recall_at_precision(1.0) == 0.0
    assert curve.threshold_at_precision(1.0) is None


def test_query_without_positive_is_a_true_negative_when_rejected():
    curve = pr_curve([0.9, 0.1], [True, False], [True, False])
    np.testing.assert_allclose(curve.precision, [1.0, 0.5])  # accepting it (at 0.1) is a false loop closure
    np.testing.assert_allclose(curve.recall, [1.0, 1.0])
    assert curve.auc == pytest.approx(1.0) and curve.recall_at_precision(1.0) == 1.0
    assert curve.threshold_at_precision(1.0) == pytest.approx(0.9)  # rejecting it costs no recall


def test_unmatched_queries_are_never_accepted_and_degenerate_cases():
    curve = pr_curve([-np.inf, 0.5], [False, True], [True, True])
    np.testing.assert_allclose(curve.precision, [1.0])
    np.testing.assert_allclose(curve.recall, [0.5])
    empty = pr_curve([-np.inf], [False], [True])
    assert empty.auc == 0.0 and empty.recall_at_precision(1.0) == 0.0
    none_positive = pr_curve([0.3], [False], [False])
    assert none_positive.auc == 0.0 and list(none_positive.precision) == [0.0]
    with pytest.raises(ValueError, match="without positives"):
        pr_curve([0.3], [True], [False])
    with pytest.raises(ValueError, match=r"\(Q,\)"):
        pr_curve([0.3, 0.2], [True], [True])


def test_top1_pr_scores_by_negative_distance():
    distances = np.array([[0.2, 0.5], [0.1, 0.3], [0.7, 0.8]])  # scores -0.2, -0.1, -0.7
    correct = np.array([[True, False], [False, True], [False, False]])
    curve = top1_pr(distances, correct, [np.array([3]), np.array([1]), np.array([], dtype=int)])
    np.testing.assert_allclose(curve.thresholds, [-0.1, -0.2, -0.7])
    np.testing.assert_allclose(curve.precision, [0.0, 0.5, 1 / 3])
    np.testing.assert_allclose(curve.recall, [0.0, 0.5, 0.5])
    assert curve.auc == pytest.approx(0.25)
