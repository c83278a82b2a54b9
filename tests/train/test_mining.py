"""Mining: best positive, hardest violating negatives among sampled + previous ones, skips, partial caches; the
distances come only for the needed pairs and equal a brute-force full matrix's choice."""


import numpy as np
import pytest

from netvlad.train.mining import mine, sample_candidates, select_tuples, squared_distance_matrix
from netvlad.train.pairs import PairPlan, group_size, pair_distances, plan_pairs


def _mine(distances, positives, non_negatives, previous=None, cached=None, samples=1000, negatives=3, seed=0,
          num_database=None):
    """The pure steps on a given distance matrix (rows: queries; columns: cached rows)."""
    distances = np.asarray(distances, dtype=np.float32)
    cached = np.arange(distances.shape[1]) if cached is None else np.asarray(cached)
    previous = np.full((len(distances), negatives), -1) if previous is None else np.asarray(previous)
    candidates = sample_candidates(cached, positives=[np.asarray(p) for p in positives],
                                   non_negatives=[np.asarray(n) for n in non_negatives], previous=previous,
                                   rng=np.random.default_rng(seed), num_database=num_database or int(cached.max()) + 1,
                                   num_samples=samples)
    found = [d[c.rows] if c is not None else None for d, c in zip(distances, candidates, strict=True)]
    return select_tuples(candidates, found, cached, margin=0.1, num_negatives=negatives)


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
    database, queries = rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(6, 8)).astype(np.float32)
    positives = [np.array([i, i + 1]) for i in range(6)]
    non_negatives = [np.arange(i, i + 4) for i in range(6)]
    previous = np.full((6, 3), -1)

    def run(rows):
        return mine(database, queries[rows], np.arange(40), positives=[positives[i] for i in rows],
                    non_negatives=[non_negatives[i] for i in rows], previous=previous[rows],
                    rng=[np.random.default_rng(100 + i) for i in rows], num_database=40, margin=0.1, num_samples=8,
                    num_negatives=3)

    whole, whole_previous = run(np.arange(6))
    parts = [run(np.arange(0, 3)), run(np.arange(3, 6))]
    assert whole.queries.tolist() == [*parts[0][0].queries, *(parts[1][0].queries + 3)]
    np.testing.assert_array_equal(whole.negatives, np.concatenate([p[0].negatives for p in parts]))
    np.testing.assert_array_equal(whole_previous, np.concatenate([p[1] for p in parts]))
    assert len(whole) > 0 and whole.skipped == parts[0][0].skipped + parts[1][0].skipped


def _reference(database, queries, cached, positives, non_negatives, previous, rngs, num_database, num_samples,
               num_negatives, margin=0.1):
    """Brute force, as mining was first written: the full float64 distance matrix and a boolean mask per query."""
    d_all = ((queries.astype(np.float64)[:, None] - database.astype(np.float64)[None]) ** 2).sum(-1)
    row_of = np.full(num_database, -1)
    row_of[cached] = np.arange(len(cached))
    out = []
    for i, d in enumerate(d_all):
        pos_rows = row_of[positives[i]]
        pos_rows = pos_rows[pos_rows >= 0]
        eligible = np.ones(len(cached), dtype=bool)
        excluded = row_of[non_negatives[i]]
        eligible[excluded[excluded >= 0]] = False
        candidates = np.flatnonzero(eligible)
        if len(pos_rows) == 0 or len(candidates) == 0:
            out.append(None)
            continue
        if len(candidates) > num_samples:
            candidates = rngs[i].choice(candidates, num_samples, replace=False)
        prev_rows = row_of[previous[i][previous[i] >= 0]]
        prev_rows = prev_rows[(prev_rows >= 0) & eligible[np.maximum(prev_rows, 0)]]
        candidates = np.union1d(candidates, prev_rows)
        hardest = candidates[np.argsort(d[candidates], kind="stable")[:num_negatives]]
        positive = pos_rows[np.argmin(d[pos_rows])]
        violating = hardest[d[hardest] < d[positive] + margin]
        out.append((cached[positive], cached[violating].tolist(), cached[hardest].tolist()))
    return out


def _clumpy(rng, n, dim, places=20):
    """Unit vectors around a few place centres (many near neighbours, as real descriptors have)."""
    x = rng.normal(size=(places, dim))[rng.integers(0, places, n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(("dtype", "memory", "plan"), [
    ("float32", None, None), ("float16", None, None), ("float16", 40_000, None),
    ("float32", None, PairPlan(3, 7, 0)), ("float16", None, PairPlan(64, 1000, 0)),
    ("float16", None, PairPlan(1, 1, 0)),
])
def test_mining_equals_brute_force_reference(tmp_path, dtype, memory, plan, monkeypatch, products):
    """The tuples and remembered negatives equal a full-matrix reference, whatever the blocks and chunks."""
    rng = np.random.default_rng(7)
    n, q, dim = 300, 23, 24
    cached = np.sort(rng.choice(400, n, replace=False))  # a partial cache: database ids ≠ rows
    data = _clumpy(rng, n + q, dim).astype(dtype)
    path = tmp_path / "cache.npy"
    np.save(path, data)
    cache = np.load(path, mmap_mode="r")  # as the training loop reads it
    positives = [rng.choice(cached, rng.integers(0, 4), replace=False) for _ in range(q)]
    non_negatives = [np.union1d(p, rng.choice(400, 30, replace=False)) for p in positives]
    previous = np.where(rng.random((q, 5)) < 0.5, rng.choice(cached, (q, 5)), -1)
    previous[:, 0] = cached[rng.integers(0, n, q)]
    expected = _reference(data[:n], data[n:], cached, positives, non_negatives, previous,
                          [np.random.default_rng(i) for i in range(q)], 400, 40, 5, margin=0.5)
    if plan is not None:
        monkeypatch.setattr("netvlad.train.mining.pair_distances",
                            lambda db, qs, rows, _memory: pair_distances(db, qs, rows, plan=plan))
    kwargs = {} if memory is None else {"max_memory": memory}
    tuples, new_previous = mine(cache[:n], cache[n:], cached, positives=positives, non_negatives=non_negatives,
                                previous=previous, rng=[np.random.default_rng(i) for i in range(q)], num_database=400,
                                margin=0.5, num_samples=40, num_negatives=5, **kwargs)
    kept = [i for i, e in enumerate(expected) if e is not None and e[1]]
    assert tuples.queries.tolist() == kept and tuples.skipped == q - len(kept) and 0 < len(kept) < q
    for t, i in enumerate(kept):
        assert tuples.positives[t] == expected[i][0]
        assert tuples.negatives[t].tolist() == expected[i][1] + [-1] * (5 - len(expected[i][1]))
    for i, e in enumerate(expected):
        remembered = new_previous[i][new_previous[i] >= 0].tolist()
        assert remembered == (e[2] if e is not None else [])


@pytest.fixture(params=[None, 1, 3])
def products(request, monkeypatch):
    """The products as costed, or forced into groups of 1 or 3 queries over gathered rows (as at large N)."""
    if request.param is not None:
        monkeypatch.setattr("netvlad.train.pairs.group_size", lambda _pairs, queries, _rows, _dim: request.param)
    return request.param


def test_pair_distances_match_direct_within_a_small_budget(products):
    """Chunked and blocked to fit a tiny budget, the distances of the asked pairs equal direct computation."""
    rng = np.random.default_rng(2)
    database, queries = rng.normal(size=(500, 64)).astype(np.float16), rng.normal(size=(40, 64))
    rows = [rng.choice(500, rng.integers(0, 60), replace=False) for _ in range(39)] + [np.arange(500)]
    budget = 30_000  # bytes: a few queries and rows per step
    plan = plan_pairs(40, 500, 64, 2, budget)
    assert plan.bytes <= budget and plan.row_chunk < 100 and plan.query_block < 40  # many steps
    found = pair_distances(database, queries, rows, budget)
    for query, r, d in zip(queries, rows, found, strict=True):
        direct = ((query[None] - database[r].astype(np.float64)) ** 2).sum(1)
        assert d.dtype == np.float32 and d == pytest.approx(direct, rel=1e-4, abs=1e-4)
    assert pair_distances(database, queries[:0], []) == []  # a rank with no query of the chunk
    with pytest.raises(ValueError, match="too small"):
        plan_pairs(40, 500, 1024, 2, max_memory=4096)
    with pytest.raises(ValueError, match="must lie in"):
        pair_distances(database, queries[:1], [np.array([500])])


def test_products_cover_the_chunk_when_dense_and_small_groups_when_sparse():
    """Queries needing most of a chunk share one product with all of it; scattered needs go in small groups."""
    assert group_size(1000 * 1000, 1000, 10_000, 1024) == 1000  # N = 10⁴: the whole chunk at once
    assert 1 < group_size(1000 * 16, 1000, 16384, 1024) < 1000  # N = 10⁶: ~16 needed rows per query per chunk
    assert 1 <= group_size(1000 * 163, 1000, 16384, 1024) < 1000  # N = 10⁵
