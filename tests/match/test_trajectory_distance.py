"""Raw trajectory distances against a plain-loop reference, and on a revisited route."""

import numpy as np
import pytest

from netvlad.match.trajectory_distance import VELOCITIES, TrajectoryDistance


def _reference(history, candidates, database, count):
    """Mean distance along the best constant-velocity trajectory ending at each candidate (plain loops)."""
    out = []
    for c in candidates:
        best = np.inf
        for v in VELOCITIES:
            parts = [np.linalg.norm(database[c - round(v * j)] - q) for j, q in enumerate(history[::-1])
                     if 0 <= c - round(v * j) < count]
            if parts:
                best = min(best, float(np.mean(parts)))
        out.append(best)
    return np.array(out)


def test_scores_match_the_reference_including_the_route_start():
    rng = np.random.default_rng(0)
    database = rng.standard_normal((60, 16)).astype(np.float32)
    matcher = TrajectoryDistance(6)
    history = []
    for step in range(9):
        q = rng.standard_normal(16).astype(np.float32)
        history.append(q)
        candidates = rng.choice(60, 12, replace=False)
        matcher.history.append(q)
        np.testing.assert_allclose(matcher.scores(candidates, database, 55), _reference(history[-6:], candidates,
                                                                                       database, 55), rtol=1e-4)
        assert len(matcher.history) == min(step + 1, 6)


def test_a_revisit_wins_over_a_lookalike_single_frame():
    rng = np.random.default_rng(1)
    route = rng.standard_normal((40, 8)).astype(np.float32)
    matcher = TrajectoryDistance(5)
    for t in range(10, 20):  # revisiting places 10..19 with noise
        query = route[t] + 0.3 * rng.standard_normal(8).astype(np.float32)
        lookalike = 35  # a single frame nearer than the true place, but not along the trajectory
        database = route.copy()
        database[lookalike] = query + 0.01
        best, score = matcher.push(query, np.array([lookalike, t, -1]), database, 40)
    assert best == 19 and score == pytest.approx(_reference(list(matcher.history), [19], database, 40)[0])
    assert matcher.push(route[0], np.array([-1, -1]), route, 40) == (None, None)
