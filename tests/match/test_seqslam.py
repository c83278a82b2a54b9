"""SeqSLAM-style matching over a shortlist against a brute-force full-matrix reference, a synthetic route with a
known answer, sequence boundaries and velocity cases, and the online matcher against the offline one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from netvlad.data.sequences import SequenceOrder
from netvlad.errors import BadInputError
from netvlad.match import OnlineSeqSLAM, SequenceConfig, seqslam_rank
from tests.match.seqslam_reference import full_scores


def route(n: int, dim: int, seed: int, noise: float = 0.8):
    """A database route of ``n`` places and noisy queries of the same places: (database, queries), L2-normalised."""
    rng = np.random.default_rng(seed)
    places = rng.normal(size=(n, dim))
    places = places / np.linalg.norm(places, axis=1, keepdims=True)
    queries = places + noise * rng.normal(size=(n, dim)) / np.sqrt(dim)
    return places.astype(np.float32), (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def exact_shortlist(queries: np.ndarray, database: np.ndarray, m: int) -> np.ndarray:
    """The top ``m`` database indices by Euclidean distance (Q, m), as the index returns them."""
    d = ((queries[:, None, :] - database[None]) ** 2).sum(-1)
    return np.argsort(d, axis=1, kind="stable")[:, :m]


@pytest.mark.parametrize(("n", "m", "length", "radius", "centred", "two_db"),
                         [(30, 5, 4, 2, False, False), (60, 12, 6, 3, False, True), (80, 20, 10, 5, False, True),
                          (50, 10, 5, 2, True, False), (45, 9, 4, 1, True, True)])
def test_shortlist_scores_equal_full_matrix(n, m, length, radius, centred, two_db):
    """Scores of the shortlisted frames equal the full-matrix reference's, so their ranking is the reference's
    whenever the reference's best frame is in the shortlist (several sizes, causal and centred, 1 or 2 db runs)."""
    database, queries = route(n, 16, seed=n)
    db_seq = (np.arange(n) >= n // 2).astype(np.int64) if two_db else np.zeros(n, np.int64)
    db_order = SequenceOrder(db_seq, np.arange(n), ("a", "b"))
    q_frames = np.arange(n)
    q_seq = (np.arange(n) >= n // 3).astype(np.int64)  # two query sequences
    config = SequenceConfig(length=length, contrast_radius=radius, centred=centred, shortlist=m, propagate=0)
    shortlist = exact_shortlist(queries, database, m)
    q_order = SequenceOrder(q_seq, q_frames, ("x", "y"))
    got = seqslam_rank(queries, database, q_order, db_order, shortlist, config)
    ref = full_scores(queries, database, q_seq, q_frames, db_seq, np.arange(n), length, config.velocities, radius,
                      centred)
    wide = seqslam_rank(queries, database, q_order, db_order, shortlist, dataclasses.replace(config, propagate=3))
    for q in range(n):  # with propagated candidates: still the reference's scores, best first, never worse
        np.testing.assert_allclose(wide.scores[q], ref[q, wide.ranked[q]], rtol=1e-5, atol=1e-5)
        assert (np.diff(wide.scores[q]) >= 0).all() and wide.scores[q, 0] <= got.scores[q, 0] + 1e-9
    for q in range(n):
        np.testing.assert_allclose(got.scores[q], ref[q, got.ranked[q]], rtol=1e-5, atol=1e-5)
        expected = shortlist[q][np.argsort(ref[q, shortlist[q]], kind="stable")]
        np.testing.assert_array_equal(got.ranked[q], expected)
        if np.argmin(ref[q]) in shortlist[q]:
            assert ref[q, got.ranked[q, 0]] == pytest.approx(ref[q].min(), abs=1e-5)  # (ties: any best one)


def test_known_route_is_found_and_beats_single_frames():
    """Very noisy queries of a route driven at 1 database frame per query frame: single-frame matching is poor,
    L = 10 trajectories find the true frame for almost every query with a full window."""
    database, queries = route(200, 32, seed=1, noise=2.0)
    shortlist = exact_shortlist(queries, database, 40)
    single = (shortlist[:, 0] == np.arange(200)).mean()
    got = seqslam_rank(queries, database, SequenceOrder.single(np.arange(200)), None, shortlist,
                       SequenceConfig(length=10))
    full = ~got.shortened
    assert got.summary() == {"queries": 200, "shortened_windows": 9, "windows_with_gaps": 0}
    in_list = (shortlist == np.arange(200)[:, None]).any(axis=1)
    assert single < 0.5
    assert (got.ranked[full & in_list, 0] == np.arange(200)[full & in_list]).mean() > 0.95


def test_faster_query_traverse_matches_with_velocity():
    """Queries skipping every other database frame (2 db frames per query frame): found with velocity 2, not
    with the default range."""
    database, _ = route(200, 32, seed=2)
    _, noisy = route(200, 32, seed=2, noise=2.5)
    queries, truth = noisy[::2], np.arange(0, 200, 2)
    order = SequenceOrder.single(np.arange(100))
    shortlist = exact_shortlist(queries, database, 30)
    fast = seqslam_rank(queries, database, order, None, shortlist, SequenceConfig(length=8, velocities=(1.8, 2.0)))
    slow = seqslam_rank(queries, database, order, None, shortlist, SequenceConfig(length=8, velocities=(1.0,)))
    assert (fast.ranked[10:, 0] == truth[10:]).mean() > (slow.ranked[10:, 0] == truth[10:]).mean() + 0.2


@pytest.mark.parametrize("velocities", [(0.0,), (-1.0, -0.5), (0.8, 1.25)])
def test_stopped_or_reversed_vehicle_does_not_crash(velocities):
    """Repeated frame numbers (stopped), decreasing ones (reversing) and zero or negative velocities score finite
    values and report the repeats as gaps."""
    database, queries = route(40, 8, seed=3)
    frames = np.array([0, 1, 2, 2, 2, 3, 2, 1, 0, 1] * 4)
    order = SequenceOrder.single(frames)
    got = seqslam_rank(queries, database, order, None, exact_shortlist(queries, database, 6),
                       SequenceConfig(length=5, velocities=velocities))
    assert np.isfinite(got.scores).all() and got.gaps.any()
    matcher = OnlineSeqSLAM(database, None, SequenceConfig(length=5, velocities=velocities))
    for q in range(len(queries)):
        assert np.isfinite(matcher.push(queries[q], np.arange(6), int(frames[q])).scores).all()


def test_trajectories_never_cross_a_database_boundary():
    """A database of two sequences: a trajectory ending at the first frame of the second sequence uses that
    sequence only, so its length counts the points that stay inside."""
    database, queries = route(20, 8, seed=4)
    db_order = SequenceOrder(np.repeat([0, 1], 10), np.tile(np.arange(10), 2), ("a", "b"))
    config = SequenceConfig(length=4, velocities=(1.0,), contrast_radius=1, propagate=0)
    matcher = OnlineSeqSLAM(database, db_order, config)
    for q in range(4):
        match = matcher.push(queries[q], np.array([10, 13]))
    scores = dict(zip(match.ids.tolist(), match.scores.tolist(), strict=True))
    ref = full_scores(queries[:4], database, np.zeros(4, int), np.arange(4), db_order.ids, db_order.frames, 4,
                      (1.0,), 1)
    assert scores[10] == pytest.approx(ref[3, 10], abs=1e-5)  # only the point at frame 10 itself
    assert scores[13] == pytest.approx(ref[3, 13], abs=1e-5)


def test_online_matches_offline_causal_and_resets():
    """Pushing each query sequence frame by frame (reset between sequences) gives the offline causal ranking."""
    database, queries = route(50, 12, seed=5)
    q_order = SequenceOrder(np.repeat([0, 1], 25), np.tile(np.arange(25), 2), ("a", "b"))
    shortlist = exact_shortlist(queries, database, 8)
    config = SequenceConfig(length=6, contrast_radius=2)
    offline = seqslam_rank(queries, database, q_order, None, shortlist, config)
    matcher = OnlineSeqSLAM(database, None, config)
    for q in range(50):
        if q == 25:
            matcher.reset()
        match = matcher.push(queries[q], shortlist[q], int(q_order.frames[q]))
        np.testing.assert_array_equal(match.ids, offline.ranked[q])
        np.testing.assert_allclose(match.scores, offline.scores[q], rtol=1e-6)
        assert match.length == offline.lengths[q] and match.shortened == offline.shortened[q]


def test_gaps_are_counted_and_followed():
    """Queries every third frame with their recorded frame numbers: gaps counted, and trajectories following the
    numbers find the true frames more often than ones that take the frames as consecutive."""
    database, noisy = route(150, 32, seed=6, noise=2.0)
    idx = np.arange(0, 150, 3)
    shortlist = exact_shortlist(noisy[idx], database, 30)
    config = SequenceConfig(length=6, velocities=(1.0,))
    got = seqslam_rank(noisy[idx], database, SequenceOrder.single(idx), None, shortlist, config)
    naive = seqslam_rank(noisy[idx], database, SequenceOrder.single(np.arange(len(idx))), None, shortlist, config)
    assert got.summary()["windows_with_gaps"] == len(idx) - 1 and naive.summary()["windows_with_gaps"] == 0
    assert (got.ranked[5:, 0] == idx[5:]).mean() > (naive.ranked[5:, 0] == idx[5:]).mean() + 0.2


def test_bad_settings_are_refused():
    """L < 2 and a centred online matcher are refused with clear messages."""
    with pytest.raises(BadInputError, match=r"an integer in \[2, 1000\]"):
        SequenceConfig(length=1)
    with pytest.raises(ValueError, match="causal"):
        OnlineSeqSLAM(np.zeros((3, 2), np.float32), None, SequenceConfig(centred=True))


def test_batches_and_stored_databases_give_the_same_ranking(tmp_path):
    """One query window per batch (a tiny memory budget), and the database as a float16 memory map (rows read
    once each), rank as the default in-memory run; scores agree to float16's rounding."""
    database, queries = route(60, 16, seed=7)
    db_order = SequenceOrder(np.repeat([0, 1], 30), np.tile(np.arange(30), 2), ("a", "b"))
    order, shortlist = SequenceOrder.single(np.arange(60)), exact_shortlist(queries, database, 10)
    config = SequenceConfig(length=6, contrast_radius=2)
    default = seqslam_rank(queries, database, order, db_order, shortlist, config)
    single = seqslam_rank(queries, database, order, db_order, shortlist, config, max_memory=1)
    np.testing.assert_array_equal(single.ranked, default.ranked)
    np.testing.assert_allclose(single.scores, default.scores, rtol=1e-6, atol=1e-6)
    stored = np.lib.format.open_memmap(tmp_path / "db.npy", mode="w+", dtype=np.float16, shape=database.shape)
    stored[:] = database
    half = seqslam_rank(queries, stored, order, db_order, shortlist, config)
    ref = seqslam_rank(queries, database.astype(np.float16).astype(np.float32), order, db_order, shortlist, config)
    np.testing.assert_array_equal(half.ranked, ref.ranked)
    np.testing.assert_allclose(half.scores, ref.scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dense", [True, False])
def test_block_distances_both_ways_equal_direct_differences(dense):
    """The matcher's distances, by one matmul of the distinct frames against the distinct rows or window by window
    against each block, equal ‖q − x‖ computed directly (float64), in memory and from a float16 copy."""
    from netvlad.match.seqslam import DatabaseLayout, distances, squared_norms

    rng = np.random.default_rng(8)
    database, frames = rng.normal(size=(40, 24)).astype(np.float32), rng.normal(size=(7, 24)).astype(np.float32)
    slots, positions = rng.integers(0, 7, size=(3, 4)), rng.integers(-3, 43, size=(3, 5, 6))
    layout = DatabaseLayout.from_order(SequenceOrder(np.repeat([0, 1], 20), np.arange(40), ("a", "b")))
    rows = layout.order[np.clip(positions, 0, 39)]  # (B, C, W) image indices
    expected = np.linalg.norm(frames[slots][:, :, None, None, :].astype(np.float64) - database[rows][:, None], axis=-1)
    for db in (database, database.astype(np.float16)):
        got = distances(frames, slots, db, squared_norms(db), layout, positions, dense=dense).numpy()
        reference = expected if db.dtype == np.float32 else np.linalg.norm(
            frames[slots][:, :, None, None, :] - db.astype(np.float32)[rows][:, None], axis=-1)
        np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5)


def test_frame_numbers_in_any_unit_keep_the_blocks_within_the_memory_budget(monkeypatch):
    """Query frames numbered in milliseconds (33 per frame, jittered) and a gap of 10¹² frames: every block of
    distances fits half the budget (the documented split), and the scores are the brute-force reference's."""
    from netvlad.match import seqslam as scoring

    n = 40
    database, queries = route(n, 16, seed=11)
    rng = np.random.default_rng(0)
    q_frames = np.cumsum(rng.integers(30, 37, n))
    q_frames[n // 2:] += 10**12  # a gap far beyond the database: those windows' far points count 0
    config = SequenceConfig(length=5, contrast_radius=2, velocities=(1 / 33, 1 / 30), propagate=0)
    budget, shapes = 256 * 2**10, []
    real = scoring.distances

    def recorded(frames, slots, database, norms, layout, positions, dense=None):
        out = real(frames, slots, database, norms, layout, positions, dense)
        shapes.append(positions.shape)
        return out

    monkeypatch.setattr(scoring, "distances", recorded)
    shortlist = exact_shortlist(queries, database, 8)
    got = seqslam_rank(queries, database, SequenceOrder.single(q_frames), None, shortlist, config, max_memory=budget)
    assert shapes and all(4 * b * 5 * c * w <= budget / 2 for b, c, w in shapes)  # B windows of K = 5 frames
    assert max(w for _, _, w in shapes) < 3 * n  # never as wide as the frame numbers
    ref = full_scores(queries, database, np.zeros(n, int), q_frames, np.zeros(n, int), np.arange(n), 5,
                      config.velocities, 2)
    for q in range(n):
        np.testing.assert_allclose(got.scores[q], ref[q, got.ranked[q]], rtol=1e-5, atol=1e-5)
