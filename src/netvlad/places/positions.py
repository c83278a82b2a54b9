"""Position estimators from top-k matches, importable without numpy at module level (the CLI lists them): each is
one decorated function ``(positions (k, 2) metres, distances (k,)) -> (2,) metres``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from netvlad.registry import Registry

if TYPE_CHECKING:
    import numpy as np

POSITION_ESTIMATORS: Registry = Registry("position method", known="known")


@POSITION_ESTIMATORS.register("top1", help="the position of the top-1 match")
def top1_position(positions: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """The position ``(2,)`` metres of the nearest match in descriptor space, from top-k ``positions`` ``(k, 2)``
    and their descriptor ``distances`` ``(k,)`` (the first of equals, so ranked input gives its first row)."""
    import numpy as np

    return np.asarray(positions[int(np.argmin(distances))], dtype=np.float64)


@POSITION_ESTIMATORS.register("weighted", help="the distance-weighted mean of the top-k matches' positions")
def weighted_position(positions: np.ndarray, distances: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Mean of top-k ``positions`` ``(k, 2)`` weighted by 1/(descriptor distance + eps) -> ``(2,)`` metres."""
    import numpy as np

    weights = 1.0 / (np.asarray(distances, dtype=np.float64) + eps)
    return (weights[:, None] * np.asarray(positions, dtype=np.float64)).sum(0) / weights.sum()
