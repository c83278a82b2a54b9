"""Positions and ground truth (pure functions over arrays): lat/lon -> UTM, radius and frame neighbours."""

from __future__ import annotations

from collections import Counter

import numpy as np
import utm
from scipy.spatial import cKDTree

# Boundary slack (relative): a point exactly at the radius counts, even after float round-off (3 * (25/3) > 25).
RADIUS_SLACK = 1e-9


def _tree(points: np.ndarray) -> cKDTree:
    return cKDTree(np.asarray(points, dtype=np.float64).reshape(-1, 2), balanced_tree=False, compact_nodes=False)


def radius_neighbours(queries: np.ndarray, database: np.ndarray, radius: float) -> list[np.ndarray]:
    """For each query ``(Q, 2)`` metres, sorted int64 indices of database ``(N, 2)`` points within ``radius`` metres."""
    queries = np.asarray(queries, dtype=np.float64).reshape(-1, 2)
    database = np.asarray(database, dtype=np.float64).reshape(-1, 2)
    for what, points in (("query", queries), ("database", database)):
        if not np.isfinite(points).all():
            bad = int(np.flatnonzero(~np.isfinite(points).all(axis=1))[0])
            raise ValueError(f"{what} position {bad} is NaN: ground truth needs a position for every image")
    if len(queries) == 0:
        return []
    if len(database) == 0:
        return [np.empty(0, dtype=np.int64) for _ in range(len(queries))]
    found = _tree(database).query_ball_point(queries, r=radius * (1 + RADIUS_SLACK), workers=-1, return_sorted=True)
    return [np.asarray(f, dtype=np.int64) for f in found]


def has_neighbour(queries: np.ndarray, database: np.ndarray, radius: float) -> np.ndarray:
    """Boolean ``(Q,)``: whether each query has a database point within ``radius`` metres (one nearest-neighbour
    query, much cheaper than listing every neighbour)."""
    queries = np.asarray(queries, dtype=np.float64).reshape(-1, 2)
    if len(queries) == 0 or len(database) == 0:
        return np.zeros(len(queries), dtype=bool)
    distance, _ = _tree(database).query(queries, k=1, workers=-1)
    return distance <= radius * (1 + RADIUS_SLACK)


def nontrivial_neighbours(queries: np.ndarray, database: np.ndarray, radius: float, min_distance: float = 0.0,
                          query_times: np.ndarray | None = None,
                          db_times: np.ndarray | None = None) -> list[np.ndarray]:
    """Database indices within ``radius`` metres but farther than ``min_distance`` metres, and (where both are known,
    i.e. not NaN) taken at another time or panorama than the query: the official ``nontrivialPosQ``."""
    found = radius_neighbours(queries, database, radius)
    if not found or (min_distance <= 0 and (query_times is None or db_times is None)):
        return found
    lengths = np.fromiter((len(f) for f in found), dtype=np.int64, count=len(found))
    flat = np.concatenate(found)
    owner = np.repeat(np.arange(len(found)), lengths)
    keep = np.ones(len(flat), dtype=bool)
    if min_distance > 0:
        diff = np.asarray(database, dtype=np.float64)[flat] - np.asarray(queries, dtype=np.float64)[owner]
        keep &= np.einsum("ij,ij->i", diff, diff) > min_distance**2
    if query_times is not None and db_times is not None:
        qt, dt = np.asarray(query_times, dtype=np.float64)[owner], np.asarray(db_times, dtype=np.float64)[flat]
        keep &= ~(qt == dt)  # NaN == NaN is False: unknown times never exclude
    bounds = np.concatenate([[0], np.cumsum(np.bincount(owner[keep], minlength=len(found)))])
    kept = flat[keep]
    return [kept[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def frame_neighbours(query_frames: np.ndarray, db_frames: np.ndarray, tolerance: int) -> list[np.ndarray]:
    """For each query frame index, sorted database indices whose frame lies within ±``tolerance``."""
    order = np.argsort(db_frames, kind="stable")
    sorted_frames = np.asarray(db_frames)[order]
    q = np.asarray(query_frames)
    lo = np.searchsorted(sorted_frames, q - tolerance, side="left")
    hi = np.searchsorted(sorted_frames, q + tolerance, side="right")
    return [np.sort(order[a:b]).astype(np.int64) for a, b in zip(lo, hi, strict=True)]


def latlon_to_utm(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, tuple[int, str], np.ndarray]:
    """WGS84 degrees ``(N,)`` -> (UTM ``(N, 2)`` metres, the majority zone (number, letter), per-point zone keys).

    All points are projected into the majority zone; callers check ``zone_keys`` (``"32N"``: number + hemisphere)
    and refuse or skip points of another zone.
    """
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    if len(lat) == 0:
        return np.empty((0, 2)), (0, "N"), np.empty(0, dtype=object)
    bad = ~(np.isfinite(lat) & np.isfinite(lon)) | (np.abs(lat) > 84) | (np.abs(lon) > 180)
    if bad.any():
        raise ValueError(f"latitude/longitude out of range or NaN at index {int(np.flatnonzero(bad)[0])}")
    numbers = np.array([utm.latlon_to_zone_number(a, o) for a, o in zip(lat, lon, strict=True)])
    keys = np.array([f"{n}{'N' if a >= 0 else 'S'}" for n, a in zip(numbers, lat, strict=True)], dtype=object)
    major = Counter(keys.tolist()).most_common(1)[0][0]
    number, northern = int(major[:-1]), major[-1] == "N"
    east, north, _, _ = utm.from_latlon(lat, lon, force_zone_number=number, force_northern=northern)
    letter = Counter(utm.latitude_to_zone_letter(a) for a in lat[keys == major]).most_common(1)[0][0]
    return np.stack([east, north], axis=1), (number, letter), keys


def utm_to_latlon(points: np.ndarray, zone: tuple[int, str]) -> np.ndarray:
    """UTM ``(N, 2)`` metres in ``zone`` -> WGS84 ``(N, 2)`` (lat, lon) degrees."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0:
        return np.empty((0, 2))
    lat, lon = utm.to_latlon(points[:, 0], points[:, 1], zone[0], zone[1], strict=False)
    return np.stack([lat, lon], axis=1)


def describe_zones(keys: np.ndarray) -> str:
    """``"32N (10), 33N (2)"``: zone keys with counts, most common first."""
    return ", ".join(f"{k} ({n})" for k, n in Counter(np.asarray(keys).tolist()).most_common())
