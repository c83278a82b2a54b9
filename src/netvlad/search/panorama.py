"""Per-panorama scoring (Tokyo 24/7): one database panorama is several cut-outs, counted once.

The official ``dbTokyo247.m`` retrieves ``nTop × 12`` cut-outs, keeps the first cut-out of each panorama in rank
order (``unique(..., 'stable')`` over ``(id - 1) / 12``) and truncates to ``nTop``: Recall@N then counts N distinct
panoramas. These functions do the same over ranked index arrays; they know nothing of models or files.
"""

from __future__ import annotations

import numpy as np

# Tokyo 24/7 database: 12 perspective cut-outs (30° apart) of each Street View panorama, stored consecutively.
TOKYO247_CUTOUTS = 12


def panorama_ids(count: int, cutouts: int = TOKYO247_CUTOUTS) -> np.ndarray:
    """Panorama id of each of ``count`` database images stored ``cutouts`` per panorama: ``(count,)`` int64."""
    if cutouts < 1:
        raise ValueError(f"cutouts must be ≥ 1, got {cutouts}")
    return np.arange(count, dtype=np.int64) // cutouts


def first_per_group(ranked: np.ndarray, distances: np.ndarray, groups: np.ndarray, k: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Keep, per query, the first-ranked item of each group, up to ``k`` items.

    ``ranked`` ``(Q, m)`` database indices best first (−1 for none), ``distances`` ``(Q, m)``, ``groups`` ``(N,)``
    the group (panorama) id of each database index. Returns ``(Q, k)`` indices and distances, padded with −1 / inf
    where fewer than ``k`` groups were retrieved.
    """
    ranked, distances, groups = np.asarray(ranked), np.asarray(distances), np.asarray(groups)
    out = np.full((len(ranked), k), -1, dtype=np.int64)
    out_dist = np.full((len(ranked), k), np.inf, dtype=np.float32)
    for q in range(len(ranked)):
        row = ranked[q][ranked[q] >= 0]
        _, first = np.unique(groups[row], return_index=True)
        keep = np.sort(first)[:k]  # stable: the order of first appearance
        out[q, :len(keep)] = row[keep]
        out_dist[q, :len(keep)] = distances[q][ranked[q] >= 0][keep]
    return out, out_dist
