"""The one place spatial re-ranking reads a dataset's panorama marks (Tokyo 24/7: 12 cut-outs per panorama, one
result per panorama), so re-ranked Recall@N counts distinct panoramas as the global one does."""

from __future__ import annotations

import numpy as np

from netvlad.data.dataset import GeoDataset
from netvlad.search.panorama import first_per_group


def panorama_groups(dataset: GeoDataset) -> np.ndarray | None:
    """Panorama id ``(N,)`` int64 of each database image where cut-outs of one panorama count once
    (``ImageList.panoramas``, as :func:`netvlad.eval.recall.evaluate` reads it), else None.

    Examples:
        >>> from netvlad.data import GeoDataset, ImageList
        >>> cutouts = ImageList("db", ["p0_a.jpg", "p0_b.jpg", "p1_a.jpg"], [[0.0, 0.0]] * 3, panoramas=[0, 0, 1])
        >>> panorama_groups(GeoDataset("tokyo-like", cutouts, ImageList("q", ["q.jpg"], [[1.0, 0.0]])))
        array([0, 0, 1])
    """
    groups = dataset.database.panoramas
    return None if groups is None else np.asarray(groups, dtype=np.int64)


def one_per_panorama(ranked: np.ndarray, scores: np.ndarray, groups: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``ranked`` ``(Q, k)`` (best first, −1 none) and its ``scores`` with only each panorama's first-ranked image
    kept, padded with −1 / inf to ``k`` (unchanged when ``groups`` is None)."""
    if groups is None:
        return ranked, scores
    return first_per_group(ranked, scores, groups, ranked.shape[1])
