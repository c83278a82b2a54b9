"""Keyframe selection along a run, as a SLAM front-end keeps them: every image, one in N, at least S seconds
apart, or at least D metres apart along the positions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netvlad.errors import BadInputError


@dataclass(frozen=True)
class KeyframeRule:
    """``every`` keeps one image in N; ``min_interval`` seconds and ``min_distance`` metres keep an image once that
    much time or travel has passed since the last kept one (the first image is always kept). Rules combine: an
    image is kept when it passes each one given, in this order."""

    every: int = 1
    min_interval: float | None = None
    min_distance: float | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise BadInputError(f"every must be ≥ 1 (one image in N), got {self.every}", hint="--every N ≥ 1")
        for name in ("min_interval", "min_distance"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise BadInputError(f"{name} must be > 0, got {value}", hint=f"--{name.replace('_', '-')} > 0")

    @property
    def is_all(self) -> bool:
        return self.every == 1 and self.min_interval is None and self.min_distance is None


def _greedy(values: np.ndarray, gap: float, distance) -> np.ndarray:
    """Indices kept walking ``values`` in order: the first, then each at least ``gap`` from the last kept."""
    kept = [0] if len(values) else []
    for i in range(1, len(values)):
        if distance(values[i], values[kept[-1]]) >= gap:
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)


def select_keyframes(rule: KeyframeRule, stamps: np.ndarray, points: np.ndarray | None) -> np.ndarray:
    """Indices (sorted) of the keyframes among images with ``stamps`` (N,) ns in time order and ``points``
    (N, 2) metres (None without positions: ``min_distance`` is refused)."""
    keep = np.arange(len(stamps), dtype=np.int64)[:: rule.every]
    if rule.min_interval is not None:
        seconds = np.asarray(stamps, dtype=np.int64)[keep]
        gap_ns = round(rule.min_interval * 1e9)
        keep = keep[_greedy(seconds, gap_ns, lambda a, b: a - b)]
    if rule.min_distance is not None:
        if points is None:
            raise BadInputError("min_distance needs positions: name a GNSS or odometry topic",
                                hint="--gps-topic or --odom-topic")
        keep = keep[_greedy(np.asarray(points)[keep], rule.min_distance, lambda a, b: float(np.hypot(*(a - b))))]
    return keep
