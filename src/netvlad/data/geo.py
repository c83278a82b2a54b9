"""Positions and ground truth (pure functions over arrays): lat/lon -> UTM, radius and frame neighbours."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def radius_neighbours(queries: np.ndarray, database: np.ndarray, radius: float) -> list[np.ndarray]:
    """For each query ``(Q, 2)`` metres, sorted indices of database ``(N, 2)`` points within ``radius`` metres."""
    tree = cKDTree(np.asarray(database, dtype=np.float64))
    found = tree.query_ball_point(np.asarray(queries, dtype=np.float64), r=radius, workers=-1)
    return [np.asarray(sorted(f), dtype=np.int64) for f in found]


def frame_neighbours(query_frames: np.ndarray, db_frames: np.ndarray, tolerance: int) -> list[np.ndarray]:
    """For each query frame index, sorted database indices whose frame lies within ±``tolerance``."""
    order = np.argsort(db_frames, kind="stable")
    sorted_frames = np.asarray(db_frames)[order]
    q = np.asarray(query_frames)
    lo = np.searchsorted(sorted_frames, q - tolerance, side="left")
    hi = np.searchsorted(sorted_frames, q + tolerance, side="right")
    return [np.sort(order[a:b]) for a, b in zip(lo, hi, strict=True)]
