"""Ground-truth geometry against brute-force references; lat/lon -> UTM against the utm package per point."""

from __future__ import annotations

import numpy as np
import pytest
import utm

from netvlad.data import geo


def brute_radius(q: np.ndarray, db: np.ndarray, radius: float) -> list[np.ndarray]:
    d = np.sqrt(((q[:, None, :] - db[None, :, :]) ** 2).sum(-1))
    return [np.flatnonzero(row <= radius) for row in d]


def test_radius_neighbours_matches_brute_force():
    rng = np.random.default_rng(0)
    db, q = rng.uniform(0, 200, (500, 2)), rng.uniform(0, 200, (60, 2))
    got = geo.radius_neighbours(q, db, 25.0)
    for a, b in zip(got, brute_radius(q, db, 25.0), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.int64


def test_radius_boundary_is_inclusive_despite_round_off():
    spacing = 25.0 / 11  # frame 11 lies at 25.000000000000004 m in floating point
    db = np.stack([np.arange(20) * spacing, np.zeros(20)], 1)
    assert db[11, 0] > 25.0
    np.testing.assert_array_equal(geo.radius_neighbours(db[:1], db, 25.0)[0], np.arange(12))


def test_radius_neighbours_empty_sides_and_nan():
    assert geo.radius_neighbours(np.empty((0, 2)), np.zeros((3, 2)), 5) == []
    assert [len(x) for x in geo.radius_neighbours(np.zeros((2, 2)), np.empty((0, 2)), 5)] == [0, 0]
    with pytest.raises(ValueError, match="database position 1 is NaN"):
        geo.radius_neighbours(np.zeros((1, 2)), np.array([[0, 0], [np.nan, 1]]), 5)


def test_nontrivial_neighbours_excludes_close_and_same_capture():
    db = np.array([[0.0, 0.0], [0.5, 0.0], [1.5, 0.0], [5.0, 0.0], [9.0, 0.0], [30.0, 0.0]])
    q = np.array([[0.0, 0.0], [29.5, 0.0]])
    db_times = np.array([1, 1, 2, 1, np.nan, 3], dtype=float)
    q_times = np.array([1.0, 3.0])
    plain = geo.nontrivial_neighbours(q, db, 10.0, 0.0)
    np.testing.assert_array_equal(plain[0], [0, 1, 2, 3, 4])
    far = geo.nontrivial_neighbours(q, db, 10.0, 1.0)  # official dSq > 1
    np.testing.assert_array_equal(far[0], [2, 3, 4])
    np.testing.assert_array_equal(far[1], [])  # db 5 lies 0.5 m away: trivial
    timed = geo.nontrivial_neighbours(q, db, 10.0, 1.0, q_times, db_times)
    np.testing.assert_array_equal(timed[0], [2, 4])  # db 3 has the query's time; db 4's time is unknown: kept
    np.testing.assert_array_equal(geo.nontrivial_neighbours(q, db, 10.0, 0.0, q_times, db_times)[1], [])


def test_frame_neighbours():
    db_frames = np.array([5, 0, 1, 2, 3, 4])
    got = geo.frame_neighbours(np.array([0, 3, 9]), db_frames, 1)
    np.testing.assert_array_equal(got[0], [1, 2])
    np.testing.assert_array_equal(got[1], [3, 4, 5])
    np.testing.assert_array_equal(got[2], [])


def test_latlon_to_utm_matches_utm_package_per_point():
    lat = np.array([40.4406, 40.45, 40.43])
    lon = np.array([-79.9959, -79.98, -80.01])
    points, zone, keys = geo.latlon_to_utm(lat, lon)
    for i in range(3):
        e, n, number, letter = utm.from_latlon(lat[i], lon[i])
        np.testing.assert_allclose(points[i], [e, n], atol=1e-6)
        assert zone == (number, letter) == (17, "T")
    assert list(keys) == ["17N"] * 3
    back = geo.utm_to_latlon(points, zone)
    np.testing.assert_allclose(back, np.stack([lat, lon], 1), atol=1e-7)


def test_latlon_to_utm_reports_zones_and_rejects_nan():
    _, zone, keys = geo.latlon_to_utm(np.array([48.1, 48.2, 48.1]), np.array([11.5, 11.6, 12.1]))  # 32U, 32U, 33U
    assert zone[0] == 32 and sorted(set(keys)) == ["32N", "33N"]
    assert geo.describe_zones(keys) == "32N (2), 33N (1)"
    with pytest.raises(ValueError, match="index 1"):
        geo.latlon_to_utm(np.array([1.0, np.nan]), np.array([1.0, 1.0]))


def test_has_neighbour_agrees_with_radius_neighbours():
    rng = np.random.default_rng(3)
    db, q = rng.uniform(0, 500, (300, 2)), rng.uniform(0, 500, (100, 2))
    expected = [len(f) > 0 for f in geo.radius_neighbours(q, db, 12.0)]
    assert geo.has_neighbour(q, db, 12.0).tolist() == expected
    assert geo.has_neighbour(q, np.empty((0, 2)), 12.0).tolist() == [False] * 100
