"""The plain trajectory baseline (``diagonal``) against a brute-force loop over every query, database frame,
velocity and window frame, on real Nordland thumbnails (their normalised pixels, SeqSLAM's own descriptor)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from netvlad.data.sequences import SequenceOrder
from netvlad.match.diagonal import OnlineDiagonal, diagonal_rank
from netvlad.match.sequence import SequenceConfig


def thumbnails(root, side: str, count: int) -> np.ndarray:
    """The first ``count`` Nordland frames of ``side`` as (count, 512) float32: 32 × 16 grey, zero-mean, unit L2."""
    out = []
    for i in range(count):
        image = Image.open(root / side / f"images-{(i + 1) * 10:05d}.png").convert("L").resize((32, 16))
        x = np.asarray(image, np.float64).reshape(-1)
        x -= x.mean()
        out.append(x / np.linalg.norm(x))
    return np.asarray(out, np.float32)


def trajectory_loops(cost, q_seq, q_frames, db_seq, db_frames, config: SequenceConfig) -> np.ndarray:
    """(Q, N) mean of ``cost(w, x)`` along the best constant-velocity trajectory, written as plain loops over every
    query, database frame, velocity and window frame; ``x`` is None where the trajectory leaves the database
    sequence."""
    db_lists = {s: sorted(np.flatnonzero(db_seq == s), key=lambda j: (db_frames[j], j)) for s in set(db_seq)}
    q_lists = {s: sorted(np.flatnonzero(q_seq == s), key=lambda i: (q_frames[i], i)) for s in set(q_seq)}
    scores = np.zeros((len(q_seq), len(db_seq)))
    for members in q_lists.values():
        for t, i in enumerate(members):
            window = members[max(0, t - config.before):t + config.after + 1]
            for db_members in db_lists.values():
                for p, j in enumerate(db_members):
                    best = np.inf
                    for v in config.velocities:
                        total = 0.0
                        for w in window:
                            at = p + int(np.rint(v * (q_frames[w] - q_frames[i])))
                            total += cost(w, db_members[at] if 0 <= at < len(db_members) else None)
                        best = min(best, total / len(window))
                    scores[i, j] = best
    return scores


def brute_force(queries, database, q_seq, q_frames, db_seq, db_frames, config: SequenceConfig) -> np.ndarray:
    """(Q, N) mean squared distance along the best constant-velocity trajectory, written as plain loops."""
    q64, db64 = queries.astype(np.float64), database.astype(np.float64)
    largest = max(float(np.linalg.norm(x)) for x in db64)

    def cost(w, x):
        if x is None:
            return (float(np.linalg.norm(q64[w])) + largest) ** 2
        return float(((q64[w] - db64[x]) ** 2).sum())

    return trajectory_loops(cost, q_seq, q_frames, db_seq, db_frames, config)


@pytest.mark.parametrize(("length", "centred", "velocities", "memory"),
                         [(5, False, (0.8, 1.0, 1.25), None), (4, True, (1.0,), None), (6, False, (0.5, 1.0, 2.0), 1),
                          (5, True, (0.8, 1.0, 1.25), 3e4)])
def test_diagonal_equals_brute_force_on_nordland(nordland, length, centred, velocities, memory):
    """Two database sequences (trajectories never cross), two query sequences, one with a gap of two frames; every
    score of the top 12 is the reference's and the ranking is the reference's order (several memory budgets)."""
    database, queries = thumbnails(nordland, "summer", 40), thumbnails(nordland, "winter", 40)
    keep = np.r_[0:17, 19:40]  # queries 17 and 18 are missing: a gap
    queries = queries[keep]
    db_seq, db_frames = (np.arange(40) >= 25).astype(np.int64), np.arange(40)
    q_seq, q_frames = (keep >= 30).astype(np.int64), keep
    config = SequenceConfig(length=length, centred=centred, velocities=velocities)
    got = diagonal_rank(queries, database, SequenceOrder(q_seq, q_frames, ("x", "y")),
                        SequenceOrder(db_seq, db_frames, ("a", "b")), config, k=12,
                        **({} if memory is None else {"max_memory": memory}))
    ref = brute_force(queries, database, q_seq, q_frames, db_seq, db_frames, config)
    for q in range(len(queries)):
        np.testing.assert_allclose(got.scores[q], ref[q, got.ranked[q]], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.scores[q], np.sort(ref[q])[:12], rtol=1e-4, atol=1e-5)
    assert got.gaps.sum() > 0 and got.shortened.sum() > 0


def test_diagonal_finds_the_route_where_single_frames_fail(nordland):
    """Summer → winter: the trajectory finds more of the first 60 places (±1) than the single-frame nearest
    neighbour does."""
    database, queries = thumbnails(nordland, "summer", 60), thumbnails(nordland, "winter", 60)
    order = SequenceOrder.single(np.arange(60))
    got = diagonal_rank(queries, database, order, order, SequenceConfig(length=10), k=1)
    single = ((queries[:, None] - database[None]) ** 2).sum(-1).argmin(1)
    truth = np.arange(60)
    assert (np.abs(got.ranked[:, 0] - truth) <= 1).mean() > (np.abs(single - truth) <= 1).mean()


def test_streaming_frame_by_frame_gives_the_offline_causal_ranking(nordland):
    """Pushed one frame at a time (reset at each query sequence's start, frame numbers with a gap), the online
    scorer returns the offline causal ranking and scores, over a database of two sequences."""
    database, queries = thumbnails(nordland, "summer", 40), thumbnails(nordland, "winter", 40)
    keep = np.r_[0:17, 19:40]
    queries, q_seq = queries[keep], (keep >= 30).astype(np.int64)
    db_order = SequenceOrder((np.arange(40) >= 25).astype(np.int64), np.arange(40), ("a", "b"))
    config = SequenceConfig(length=6, velocities=(0.8, 1.0, 1.25))
    offline = diagonal_rank(queries, database, SequenceOrder(q_seq, keep, ("x", "y")), db_order, config, k=8)
    online = OnlineDiagonal(database, db_order, config)
    for i in range(len(queries)):
        if i and q_seq[i] != q_seq[i - 1]:
            online.reset()
        match = online.push(queries[i], int(keep[i]), k=8)
        np.testing.assert_allclose(match.scores[0], offline.scores[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(match.ranked[0][:3], offline.ranked[i][:3])
        assert match.shortened[0] == offline.shortened[i] and match.gaps[0] == offline.gaps[i]


def test_online_over_a_growing_database_equals_a_fixed_prefix(nordland):
    """Loop closure: the database grows while frames arrive; each push over the first ``count`` rows scores as a
    scorer built on those rows alone would."""
    database, queries = thumbnails(nordland, "summer", 30), thumbnails(nordland, "winter", 30)
    config = SequenceConfig(length=4, velocities=(1.0,))
    growing = OnlineDiagonal(database, None, config)
    for i in range(12):
        count = 10 + i
        match = growing.push(queries[i], count=count, k=5)
        fixed = OnlineDiagonal(database[:count], None, config)
        for j in range(max(0, i - 3), i + 1):
            expected = fixed.push(queries[j], j, k=5)
        np.testing.assert_allclose(match.scores[0], expected.scores[0], rtol=1e-5, atol=1e-6)
        assert (match.ranked[0] < count).all()


def test_online_reads_a_memory_mapped_or_float16_database_as_the_in_memory_one(nordland, tmp_path):
    """The per-frame distances come from one pass over an in-memory float32 array, or from blocks read from a
    memory map (a store) or a float16 array: every path gives the in-memory array's ranking and scores, and the
    brute-force causal score."""
    database, queries = thumbnails(nordland, "summer", 30), thumbnails(nordland, "winter", 12)
    mapped = np.lib.format.open_memmap(tmp_path / "rows.npy", mode="w+", dtype=np.float32, shape=database.shape)
    mapped[:] = database
    config = SequenceConfig(length=4, velocities=(0.8, 1.0, 1.25))
    half = database.astype(np.float16)
    matchers = [OnlineDiagonal(rows, None, config) for rows in (database, mapped, half, half.astype(np.float32))]
    truth = brute_force(queries, database, np.zeros(12, np.int64), np.arange(12), np.zeros(30, np.int64),
                        np.arange(30), config)
    for i, query in enumerate(queries):
        memory, from_map, from_half, half_in_memory = (m.push(query, k=5) for m in matchers)
        np.testing.assert_array_equal(from_map.ranked, memory.ranked)
        np.testing.assert_allclose(from_map.scores, memory.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(from_half.scores, half_in_memory.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(memory.scores[0], np.sort(truth[i])[:5], rtol=1e-4, atol=1e-5)


def brute_force_standardised(queries, database, q_seq, q_frames, db_seq, db_frames, config) -> np.ndarray:
    """(Q, N) mean standardised squared distance along the best trajectory, as plain loops: each database frame's
    distances standardised by their mean and deviation over every query; a point outside the database sequence
    counts as (bound − smallest mean) / smallest deviation."""
    q64, db64 = queries.astype(np.float64), database.astype(np.float64)
    squared = np.array([[float(((q - x) ** 2).sum()) for x in db64] for q in q64])
    mean, scale = squared.mean(axis=0), squared.std(axis=0)
    largest = max(float(np.linalg.norm(x)) for x in db64)

    def cost(w, x):
        if x is None:
            return ((float(np.linalg.norm(q64[w])) + largest) ** 2 - mean.min()) / scale.min()
        return (squared[w, x] - mean[x]) / scale[x]

    return trajectory_loops(cost, q_seq, q_frames, db_seq, db_frames, config)


def ranked_as_reference(nordland, params, option, reference):
    """``diagonal_rank`` with ``option`` (``params``: length, centred, velocities, memory budget) on 40 summer
    thumbnails in two database sequences (25 + 15) against 38 winter ones (frames 17 and 18 missing) in two query
    sequences (30 + 8): every score of its top 12 is ``reference``'s, in its order. Returns the ranking and a function
    that ranks the same set with other options."""
    length, centred, velocities, memory = params
    database, queries = thumbnails(nordland, "summer", 40), thumbnails(nordland, "winter", 40)
    keep = np.r_[0:17, 19:40]
    queries = queries[keep]
    orders = (SequenceOrder((keep >= 30).astype(np.int64), keep, ("x", "y")),
              SequenceOrder((np.arange(40) >= 25).astype(np.int64), np.arange(40), ("a", "b")))
    config = SequenceConfig(length=length, centred=centred, velocities=velocities)
    budget = {} if memory is None else {"max_memory": memory}
    got = diagonal_rank(queries, database, *orders, config, k=12, **option, **budget)
    ref = reference(queries, database, orders[0].ids, orders[0].frames, orders[1].ids, orders[1].frames, config)
    for q in range(len(queries)):
        np.testing.assert_allclose(got.scores[q], ref[q, got.ranked[q]], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got.scores[q], np.sort(ref[q])[:12], rtol=1e-4, atol=1e-4)
    return got, lambda **other: diagonal_rank(queries, database, *orders, config, k=12, **other, **budget)


@pytest.mark.parametrize(("length", "centred", "velocities", "memory"),
                         [(5, False, (1.0,), None), (4, True, (0.8, 1.0, 1.25), 3e4)])
def test_standardised_diagonal_equals_brute_force_on_nordland(nordland, length, centred, velocities, memory):
    """The standardised score (sequence method diagonal-standardised): every score of the top 12 is the loop
    reference's, in its order, for two memory budgets; and it is not the raw ranking."""
    got, rank = ranked_as_reference(nordland, (length, centred, velocities, memory), {"standardised": True},
                                    brute_force_standardised)
    assert (rank().ranked != got.ranked).any()


def test_query_statistics_equal_numpy(nordland):
    """Each database frame's mean and deviation of squared distances over the queries, in blocks of one row."""
    from netvlad.match.diagonal import query_statistics

    database, queries = thumbnails(nordland, "summer", 30), thumbnails(nordland, "winter", 20)
    squared = ((queries[:, None].astype(np.float64) - database[None]) ** 2).sum(-1)
    mean, scale = query_statistics(queries, database, max_memory=8 * 20)
    np.testing.assert_allclose(mean, squared.mean(0), rtol=1e-5)
    np.testing.assert_allclose(scale, squared.std(0), rtol=1e-5)


def brute_force_seen(queries, database, q_seq, q_frames, db_seq, db_frames, config) -> np.ndarray:
    """(Q, N) mean seen-so-far standardised distance along the best trajectory, as plain loops: query frame t's
    distances standardised by each database frame's statistics over the frames streamed up to t (sequence after
    sequence, each in frame order), seeded with 50 pseudo-frames of t's own mean and deviation over the database."""
    q64, db64 = queries.astype(np.float64), database.astype(np.float64)
    squared = np.array([[float(((q - x) ** 2).sum()) for x in db64] for q in q64])
    largest = max(float(np.linalg.norm(x)) for x in db64)
    z, pad = np.zeros_like(squared), np.zeros(len(q64))
    stream = sorted(range(len(q_seq)), key=lambda i: (q_seq[i], q_frames[i], i))
    for n, t in enumerate(stream, start=1):
        mu, sigma = squared[t].mean(), squared[t].std()
        seen = squared[stream[:n]]
        mean = (seen.sum(0) + 50 * mu) / (n + 50)
        deviation = np.sqrt(((seen ** 2).sum(0) + 50 * (mu ** 2 + sigma ** 2)) / (n + 50) - mean ** 2)
        z[t] = (squared[t] - mean) / deviation
        pad[t] = (float(np.linalg.norm(q64[t])) + largest) ** 2 / (sigma * np.sqrt(50 / (n + 50)))

    return trajectory_loops(lambda w, x: pad[w] if x is None else z[w, x], q_seq, q_frames, db_seq, db_frames,
                            config)


@pytest.mark.parametrize(("length", "centred", "velocities", "memory"),
                         [(5, False, (0.8, 1.0, 1.25), None), (4, True, (1.0,), 1), (6, False, (1.0,), 3e4)])
def test_seen_standardised_diagonal_equals_brute_force_on_nordland(nordland, length, centred, velocities, memory):
    """The seen-so-far standardised score (diagonal-causal-standardised): every score of the top 12 is the loop
    reference's, in its order, for query blocks of one frame up to all of them (running sums carried between
    blocks and on into the second query sequence); and it is neither the raw nor the whole-set ranking."""
    got, rank = ranked_as_reference(nordland, (length, centred, velocities, memory), {"seen_only": True},
                                    brute_force_seen)
    for other in ({}, {"standardised": True}):
        assert (rank(**other).ranked != got.ranked).any()


def test_streaming_seen_standardised_gives_the_offline_ranking(nordland):
    """Pushed one frame at a time (the window reset at each query sequence's start, the statistics kept), the
    seen-so-far standardised online scorer returns the offline ranking and scores."""
    database, queries = thumbnails(nordland, "summer", 40), thumbnails(nordland, "winter", 40)
    keep = np.r_[0:17, 19:40]
    queries, q_seq = queries[keep], (keep >= 30).astype(np.int64)
    db_order = SequenceOrder((np.arange(40) >= 25).astype(np.int64), np.arange(40), ("a", "b"))
    config = SequenceConfig(length=6, velocities=(0.8, 1.0, 1.25))
    offline = diagonal_rank(queries, database, SequenceOrder(q_seq, keep, ("x", "y")), db_order, config, k=8,
                            seen_only=True)
    online = OnlineDiagonal(database, db_order, config, seen_only=True)
    for i in range(len(queries)):
        if i and q_seq[i] != q_seq[i - 1]:
            online.reset()
        match = online.push(queries[i], int(keep[i]), k=8)
        np.testing.assert_allclose(match.scores[0], offline.scores[i], rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(match.ranked[0][:3], offline.ranked[i][:3])


def brute_force_seen_growing(queries, database, q_seq, q_frames, counts, config) -> list[np.ndarray]:
    """Per push t, the (count_t,) mean seen-so-far standardised distance of query t along the best trajectory over
    the first count_t database rows (one sequence), as plain loops with per-column counts: row j becomes matchable
    at push a_j (the first with count > j), its sums take d_i(j) for a_j ≤ i ≤ t; a frame i against a row added
    after it uses its own seed statistics alone; μ_i, σ_i over the rows matchable at i (or, none, the first rows
    that are); a point outside costs (‖q_i‖ + max‖x‖ now)² / (σ_i √(50 / (n_i(0) + 50)))."""
    q64, db64 = queries.astype(np.float64), database.astype(np.float64)
    squared = np.array([[float(((q - x) ** 2).sum()) for x in db64] for q in q64])
    added = [next(t for t, c in enumerate(counts) if c > j) if j < max(counts) else None
             for j in range(len(database))]
    basis = [c if c else next(c2 for c2 in counts[i:] if c2) for i, c in enumerate(counts)]
    mu = [squared[i, :basis[i]].mean() for i in range(len(queries))]
    sigma = [max(squared[i, :basis[i]].std(), 1e-6) for i in range(len(queries))]

    def z(i, j):
        if added[j] is None or added[j] > i:
            return (squared[i, j] - mu[i]) / sigma[i]
        seen = squared[added[j]:i + 1, j]
        n = len(seen)
        mean = (seen.sum() + 50 * mu[i]) / (n + 50)
        deviation = np.sqrt(((seen ** 2).sum() + 50 * (mu[i] ** 2 + sigma[i] ** 2)) / (n + 50) - mean ** 2)
        return (squared[i, j] - mean) / max(deviation, 1e-6)

    out = []
    for t, count in enumerate(counts):
        if not count:
            out.append(np.zeros(0))
            continue
        largest = max(float(np.linalg.norm(x)) for x in db64[:count])

        def cost(w, x, largest=largest):
            if x is None:
                oldest = w - added[0] + 1 if added[0] is not None and added[0] <= w else 0
                return (float(np.linalg.norm(q64[w])) + largest) ** 2 / (sigma[w] * np.sqrt(50 / (oldest + 50)))
            return z(w, x)

        scores = trajectory_loops(cost, q_seq[:t + 1], q_frames[:t + 1], np.zeros(count, np.int64),
                                  np.arange(count), config)
        out.append(scores[t])
    return out


def test_streaming_seen_standardised_over_a_growing_database_equals_the_loop_reference(nordland):
    """Loop closure: the database grows while frames arrive (none matchable for the first two pushes, then one to
    three rows more per push); the seen-so-far standardised online scorer gives, push by push, every score of the
    per-column-count loop reference in its order, over two query sequences (window reset, statistics kept) with a
    gap; a shrinking count is refused."""
    database, queries = thumbnails(nordland, "summer", 60)[20:], thumbnails(nordland, "winter", 44)[20:]
    keep = np.r_[0:9, 11:24]  # the route's first frames are alike: from frame 20 on
    queries, q_seq = queries[keep], (keep >= 16).astype(np.int64)
    counts = [0, 0] + [min(40, 2 + 2 * t + t % 2) for t in range(len(keep) - 2)]
    config = SequenceConfig(length=5, velocities=(0.8, 1.0, 1.25))
    reference = brute_force_seen_growing(queries, database, q_seq, keep, counts, config)
    online = OnlineDiagonal(database, None, config, seen_only=True)
    for t, count in enumerate(counts):
        if t and q_seq[t] != q_seq[t - 1]:
            online.reset()
        match = online.push(queries[t], int(keep[t]), count=count, k=6)
        if not count:
            assert (match.ranked[0] == -1).all()
            continue
        shown = min(6, count)
        np.testing.assert_allclose(match.scores[0, :shown], reference[t][match.ranked[0, :shown]], rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(match.scores[0, :shown], np.sort(reference[t])[:shown], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="may only grow"):
        online.push(queries[0], count=counts[-1] - 1)
