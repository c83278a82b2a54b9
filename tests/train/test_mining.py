"""Mining: best positive, hardest violating negatives among sampled + previous ones, skips, partial caches."""

import numpy as np
import pytest

from netvlad.train.mining import mine, squared_distance_matrix


def _mine(distances, positives, non_negatives, previous=None, cached=None, samples=1000, negatives=3, seed=0,
          num_database=None):
    distances = np.asarray(distances, dtype=np.float32)
    cached = np.arange(distances.shape[1]) if cached is None else np.asarray(cached)
    previous = np.full((len(distances), negatives), -1) if previous is None else np.asarray(previous)
    return mine(distances, cached, positives=[np.asarray(p) for p in positives],
                non_negatives=[np.asarray(n) for n in non_negatives], previous=previous,
                rng=np.random.default_rng(seed), num_database=num_database or int(cached.max()) + 1, margin=0.1,
                num_samples=samples, num_negatives=negatives)


def test_best_positive_and_hardest_violating_negatives():
    #            db: 0    1    2    3    4    5    6
    d = [[0.9, 0.5, 0.7, 0.3, 0.55, 0.58, 2.0]]
    # positives 0, 1 (nearest: 1 at 0.5); 2 is within 25 m (never a negative); violating: d < 0.6 → 3, 4, 5
    tuples, previous = _mine(d, [[0, 1]], [[0, 1, 2]])
    assert tuples.queries.tolist() == [0] and tuples.positives.tolist() == [1]
    assert tuples.negatives.tolist() == [[3, 4, 5]]  # hardest first
    assert previous.tolist() == [[3, 4, 5]]
    assert tuples.skipped == 0


def test_only_violating_negatives_are_kept_and_padded():
    d = [[0.5, 0.3, 0.62, 0.9]]  # positive 0 (0.5); negatives 1 (violates), 2 (0.62 ≥ 0.6: no), 3
    tuples, previous = _mine(d, [[0]], [[0]])
    assert tuples.negatives.tolist() == [[1, -1, -1]]
    assert previous.tolist() == [[1, 2, 3]]  # the hardest are remembered, violating or not


def test_query_without_violating_negative_is_skipped():
    d = [[0.1, 0.9, 1.5], [0.2, 0.25, 3.0]]
    tuples, _ = _mine(d, [[0], [0]], [[0], [0]])
    assert tuples.queries.tolist() == [1] and tuples.skipped == 1
    assert tuples.negatives.tolist() == [[1, -1, -1]]


def test_previous_hard_negatives_join_the_sample():
    rng_d = np.linspace(1.0, 2.0, 50)[None].copy()
    rng_d[0, 0] = 0.0  # the positive
    rng_d[0, 37] = 0.05  # the only violating negative, almost surely not among 2 random samples
    previous = [[37, -1, -1]]
    with_prev, _ = _mine(rng_d, [[0]], [[0]], previous=previous, samples=2)
    assert with_prev.negatives.tolist() == [[37, -1, -1]]
    without, _ = _mine(rng_d, [[0]], [[0]], samples=2)
    assert len(without) == 0 and without.skipped == 1


def test_sampling_is_seeded_and_bounded():
    d = np.random.default_rng(1).uniform(0, 1, (1, 200)).astype(np.float32)
    d[0, 0] = 0.9
    a, prev_a = _mine(d, [[0]], [[0]], samples=20, negatives=5, seed=3)
    b, prev_b = _mine(d, [[0]], [[0]], samples=20, negatives=5, seed=3)
    assert np.array_equal(a.negatives, b.negatives) and np.array_equal(prev_a, prev_b)
    full, _ = _mine(d, [[0]], [[0]], samples=1000, negatives=5)
    assert full.negatives.tolist() == [np.argsort(d[0, 1:])[:5].__add__(1).tolist()]  # exhaustive: global hardest


def test_partial_cache_maps_database_ids():
    # cached rows are database images 10, 20, 30, 40; query's positive 20, its non-negatives 10 and 20
    d = [[0.4, 0.2, 0.25, 0.1]]
    tuples, previous = _mine(d, [[20, 99]], [[10, 20]], cached=[10, 20, 30, 40], num_database=100)
    assert tuples.positives.tolist() == [20]
    assert tuples.negatives.tolist() == [[40, 30, -1]]
    assert previous[0, :2].tolist() == [40, 30]


def test_squared_distance_matrix_matches_direct():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(9, 7)).astype(np.float16)
    expected = ((a[:, None, :] - b[None].astype(np.float64)) ** 2).sum(-1)
    assert squared_distance_matrix(a, b, block=4) == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_per_query_generators_make_mining_independent_of_the_split():
    """Ranks mine blocks of a chunk: with one generator per query the tuples equal mining the chunk at once."""
    rng = np.random.default_rng(3)
    distances = rng.random((6, 40)).astype(np.float32)
    positives = [np.array([i, i + 1]) for i in range(6)]
    non_negatives = [np.arange(i, i + 4) for i in range(6)]
    previous = np.full((6, 3), -1)

    def run(rows):
        return mine(distances[rows], np.arange(40), positives=[positives[i] for i in rows],
                    non_negatives=[non_negatives[i] for i in rows], previous=previous[rows],
                    rng=[np.random.default_rng(100 + i) for i in rows], num_database=40, margin=0.1, num_samples=8,
                    num_negatives=3)

    whole, whole_previous = run(np.arange(6))
    parts = [run(np.arange(0, 3)), run(np.arange(3, 6))]
    assert whole.queries.tolist() == [*parts[0][0].queries, *(parts[1][0].queries + 3)]
    np.testing.assert_array_equal(whole.negatives, np.concatenate([p[0].negatives for p in parts]))
    np.testing.assert_array_equal(whole_previous, np.concatenate([p[1] for p in parts]))
    assert len(whole) > 0 and whole.skipped == parts[0][0].skipped + parts[1][0].skipped
