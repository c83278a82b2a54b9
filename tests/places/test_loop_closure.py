"""The default loop-closure decision's checks, on constructed routes where the right answer is known."""

import logging

import numpy as np
import torch

from netvlad.extract.local_features import LocalFeatures, select_cells
from netvlad.places.loop_closure import LoopClosureConfig, LoopClosureDetector

DIM = 32


def _places(n, rng):
    """``n`` places of unrelated unit descriptors."""
    route = rng.standard_normal((n, DIM)).astype(np.float32)
    return route / np.linalg.norm(route, axis=1, keepdims=True)


def _cells(rng, rows=6, cols=8):
    return select_cells(torch.from_numpy(rng.standard_normal((24, rows, cols)).astype(np.float32)))


def _run(detector, route, queries, local, searchable):
    """Check each query in order against ``route`` (its first ``searchable`` rows), exact shortlists."""
    out = []
    for t, query in enumerate(queries):
        distances = np.linalg.norm(route[:searchable] - query, axis=1)
        shortlist = np.argsort(distances)[:50]
        out.append(detector.check(query, local[t], int(shortlist[0]), shortlist, route, searchable, t))
    return out


def test_a_revisit_forward_or_backward_is_consistent_distinctive_and_verified():
    rng = np.random.default_rng(0)
    route = _places(300, rng)
    cells = [_cells(rng) for _ in route]
    for direction in (1, -1):
        detector = LoopClosureDetector(LoopClosureConfig(min_inliers=16), length=None)
        detector.local = cells
        places = np.arange(100, 140)[::direction]
        queries = route[places] + 0.01 * rng.standard_normal((len(places), DIM)).astype(np.float32)
        checks = _run(detector, route, queries, [cells[p] for p in places], 300)
        last = checks[-1]
        assert last.consistency == 1.0 and last.distinctiveness > 5 and last.ratio < 0.5
        assert last.inliers == 48 and last.accepted  # the same cells: every one a mutual match and an inlier


def test_a_lookalike_of_many_places_is_not_distinctive():
    """Queries equally close to a whole stretch of the map: the runner-up place is as close as the best (a ratio
    near 1, reported), and as well verified (the stretch looks alike in its local features too): refused."""
    rng = np.random.default_rng(1)
    route = _places(300, rng)
    route[200:] = route[200] + 0.001 * rng.standard_normal((100, DIM)).astype(np.float32)  # one look, 100 places
    detector = LoopClosureDetector(length=None)
    look = _cells(rng)
    detector.local = [_cells(rng) for _ in route[:200]] + [look] * 100
    queries = route[250:260] + 0.01 * rng.standard_normal((10, DIM)).astype(np.float32)
    checks = _run(detector, route, queries, [look] * 10, 300)
    assert all(c.ratio > 0.9 and not c.accepted for c in checks)
    assert any(c.inliers == 48 and c.null_inliers == 48 for c in checks)


def test_geometry_rejects_a_candidate_whose_features_disagree():
    rng = np.random.default_rng(2)
    route = _places(300, rng)
    detector = LoopClosureDetector(length=None)
    detector.local = [_cells(rng) for _ in route]
    queries = route[100:110]
    other = [_cells(rng) for _ in range(10)]  # unrelated local features
    checks = _run(detector, route, queries, other, 300)
    assert checks[-1].consistency == 1.0 and checks[-1].inliers is not None
    assert checks[-1].inliers < 12 and not checks[-1].accepted


def test_a_map_too_small_to_calibrate_declares_nothing_and_says_so_once(caplog):
    rng = np.random.default_rng(3)
    route = _places(40, rng)
    detector = LoopClosureDetector(length=None)
    detector.local = [_cells(rng) for _ in route]
    with caplog.at_level(logging.INFO, logger="netvlad.places.loop_closure"):
        checks = _run(detector, route, route[:5], detector.local[:5], 40)
    assert all(not c.accepted and c.distinctiveness is None for c in checks)
    assert caplog.text.count("to calibrate") == 1


def test_inliers_of_a_shifted_view_and_too_few_features(caplog):
    """A view shifted by two cells keeps its overlapping cells as homography inliers; 8 cells cannot verify."""
    rng = np.random.default_rng(4)
    scene = torch.from_numpy(rng.standard_normal((24, 10, 14)).astype(np.float32))
    a, b = select_cells(scene[:, :, :12]), select_cells(scene[:, :, 2:])
    detector = LoopClosureDetector()
    assert detector.inliers(a, b) == 10 * 10  # the 10 shared columns of 10 rows
    tiny = LocalFeatures(a.descriptors[:8], a.xy[:8], (1, 8))
    with caplog.at_level(logging.INFO, logger="netvlad.places.loop_closure"):
        assert detector.inliers(tiny, tiny) == 0
    assert "fewer than the 12 inliers" in caplog.text


def test_without_local_features_nothing_is_verified_nor_accepted():
    """A stream deciding by --threshold describes no local features: the cheap checks still report."""
    rng = np.random.default_rng(5)
    route = _places(300, rng)
    detector = LoopClosureDetector(length=None)
    detector.local = [None] * 300
    queries = route[100:112] + 0.01 * rng.standard_normal((12, DIM)).astype(np.float32)
    last = _run(detector, route, queries, [None] * 12, 300)[-1]
    assert last.consistency == 1.0 and last.distinctiveness > 5 and last.inliers is None and not last.accepted


def test_the_closure_is_to_where_the_window_lines_up_not_to_the_frame_s_nearest_neighbour():
    """The last frame looks most like the entry two behind its place: the window's trajectory ends at its place,
    and the checks (and the closure) are of that place."""
    rng = np.random.default_rng(6)
    steps = _places(300, rng)
    route = np.cumsum(steps, axis=0)  # a walk: neighbouring places look alike, as along a real route
    route /= np.linalg.norm(route, axis=1, keepdims=True)
    cells = [_cells(rng) for _ in route]
    detector = LoopClosureDetector(LoopClosureConfig(min_inliers=16), length=None)
    detector.local = cells
    places = np.arange(100, 140)
    queries = route[places] + 0.01 * rng.standard_normal((len(places), DIM)).astype(np.float32)
    queries[-1] = route[137] + 0.01 * rng.standard_normal(DIM).astype(np.float32)
    distances = np.linalg.norm(route - queries[-1], axis=1)
    assert np.argmin(distances) == 137
    last = _run(detector, route, queries, [cells[p] for p in places], 300)[-1]
    assert last.place == 139 and last.consistency == 1.0 and last.accepted
    assert last.inliers == 48  # verified against place 139's cells, the last frame's own


def test_the_null_is_the_most_inliers_with_the_runner_up_and_the_seeded_random_frames():
    """Against an independent count: every frame's inliers with the query, the rows drawn as numpy draws them."""
    rng = np.random.default_rng(7)
    detector = LoopClosureDetector()
    detector.local = [_cells(rng) for _ in range(80)]
    query = detector.local[30]  # frame 30 itself sits in the map: drawn at random, it is its own best null
    for frame in range(12):
        rows = set(np.random.default_rng(frame).integers(0, 70, size=4).tolist())
        expected = max(detector.inliers(query, detector.local[r], frame) for r in rows | {75})
        assert detector.null(query, 75, 70, frame) == expected
        assert (expected == 48) == (30 in rows)  # identical cells: all 48 inliers; unrelated ones: few
    assert detector.null(query, 30, 70, 0) == 48  # the runner-up counts even when not drawn


def test_a_candidate_no_better_verified_than_the_runner_up_place_is_refused():
    """A street of lookalike facades: the runner-up place verifies as well as the candidate, so geometry shows
    nothing; the same frames with an unrelated runner-up pass."""
    rng = np.random.default_rng(8)
    route = _places(300, rng)
    cells = [_cells(rng) for _ in route]
    places = np.arange(100, 140)
    queries = route[places] + 0.01 * rng.standard_normal((len(places), DIM)).astype(np.float32)
    detector = LoopClosureDetector(length=None)
    detector.local = cells
    accepted = _run(detector, route, queries, [cells[p] for p in places], 300)[-1]
    lookalike = LoopClosureDetector(length=None)
    lookalike.local = [cells[139]] * len(route)  # every place shows the same facade
    refused = _run(lookalike, route, queries, [cells[139]] * len(places), 300)[-1]
    assert accepted.accepted and accepted.inliers == 48 and accepted.null_inliers < 12
    assert refused.inliers == 48 and refused.null_inliers == 48 and not refused.accepted


def test_one_batched_ransac_counts_each_pair_as_its_own_ransac_would():
    """Candidates of different sizes, padded into one batch: each count equals a RANSAC of that pair's mutual
    matches alone with the same seeded draws (the matching module's own single-candidate call)."""
    from netvlad.match.verify.matching import mutual_nearest, ransac_inliers

    rng = np.random.default_rng(9)
    scene = torch.from_numpy(rng.standard_normal((24, 10, 14)).astype(np.float32))
    query = select_cells(scene[:, :, :12])
    candidates = [select_cells(scene[:, :, 2:]), select_cells(scene[:, :, 1:9]), _cells(rng), query.strongest(30)]
    detector = LoopClosureDetector()
    counts = detector.inliers_many(query, candidates, seed=5)
    for candidate, count in zip(candidates, counts, strict=True):
        partner, mutual = mutual_nearest(torch.from_numpy(query.vectors()), torch.from_numpy(candidate.vectors())[None])
        keep = mutual[0]
        src = torch.from_numpy(query.xy.astype(np.float64))[keep][None]
        dst = torch.from_numpy(candidate.xy.astype(np.float64))[partner[0][keep]][None]
        alone = ransac_inliers(src, dst, torch.ones(src.shape[:2], dtype=torch.bool), 1.5, 128,
                               torch.Generator().manual_seed(5))
        assert count == int(alone[0])
    assert counts[0] == 100 and counts[3] == 30  # 10 shared columns × 10 rows; a query's own 30 strongest cells


def test_a_closure_needs_the_window_s_frames_to_have_passed_on_their_own_on_the_path():
    """A revisit whose frames each pass: support grows a tenth a frame, so the first closure is the 7th verified
    frame (min_support 0.7); a frame whose place jumps off the path is supported only by itself."""
    rng = np.random.default_rng(9)
    route = _places(300, rng)
    cells = [_cells(rng) for _ in route]
    detector = LoopClosureDetector(LoopClosureConfig(min_inliers=16, min_support=0.7), length=None)
    detector.local = cells
    places = np.arange(100, 140)
    queries = route[places] + 0.01 * rng.standard_normal((len(places), DIM)).astype(np.float32)
    checks = _run(detector, route, queries, [cells[p] for p in places], 300)
    alone = [c.inliers is not None and c.inliers >= 16 and c.consistency >= 0.8 for c in checks]
    first = alone.index(True)
    # the next ten frames each verified: support 0.1, 0.2, ..., 1.0
    assert np.allclose([c.support for c in checks[first:first + 10]], 0.1 * np.arange(1, 11))
    assert [c.accepted for c in checks[first:first + 8]] == [False] * 6 + [True] * 2
    assert detector.support(250) == 0.0 and checks[-1].accepted and checks[-1].support >= 0.7
    detector.passed[-1] = 250  # the last frame at a place 110 entries off the others': only itself
    assert detector.support(250) == 0.1
