"""Ambiguous training images: dark ones, and near-duplicates of an image beyond the negative radius.

Training labels images by position alone, so an image whose picture is that of another image more than the
negative radius away (a train standing at a station: a new "place" every frame, the same picture; the inside of two
tunnels) is a *definite negative* that no descriptor can push away from the positive it duplicates, and a dark image
(a tunnel, night) matches every other dark image. Their triplets can never be satisfied; after a cache refresh with
a trained model they are among the hardest negatives mined. Sünderhauf et al. (2013) removed the stops and tunnels
from Nordland for this reason. Two named rules, each judged within one side (database or queries) of a dataset:

- **dark**: the image's mean grey level (0–255, the mean of R, G and B) is below ``dark_level``;
- **far duplicate**: the Pearson correlation of its grey thumbnail (:data:`THUMBNAIL` pixels) with that of another
  image of the same side farther than ``radius`` metres (outside that image's non-negatives) is above
  ``correlation``.

Pure functions over arrays, but :func:`grey_thumbnails`, which reads the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from netvlad.data import geo
from netvlad.data.images import load_image

THUMBNAIL = (32, 64)  # (height, width) pixels of the grey thumbnails compared: Nordland's own size


def grey_thumbnails(paths: Sequence[Path | str], size: tuple[int, int] = THUMBNAIL) -> np.ndarray:
    """Grey thumbnails ``(N, height · width)`` float32 in 0–255 (mean of R, G, B), each image resized to ``size``."""
    out = np.empty((len(paths), size[0] * size[1]), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = load_image(path, "fixed", size).mean(0).flatten().numpy() * 255.0
    return out


def dark_images(grey: np.ndarray, dark_level: float) -> np.ndarray:
    """Boolean ``(N,)``: the images of ``grey`` ``(N, P)`` (0–255) whose mean grey level is below ``dark_level``."""
    return np.asarray(grey, dtype=np.float64).mean(1) < dark_level


def standardised(grey: np.ndarray) -> np.ndarray:
    """Rows of ``grey`` ``(N, P)`` minus their mean, scaled to unit norm (a constant row: zeros), float32; the dot
    product of two rows is the Pearson correlation of the two images' pixels."""
    grey = np.asarray(grey, dtype=np.float64)
    centred = grey - grey.mean(1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0).astype(np.float32)


def far_duplicates(grey: np.ndarray, utm: np.ndarray, radius: float, correlation: float,
                   block: int = 1024) -> np.ndarray:
    """Boolean ``(N,)``: the images of ``grey`` ``(N, P)`` whose pixel correlation with an image farther than
    ``radius`` metres (positions ``utm`` ``(N, 2)``; within ``radius`` as :func:`~netvlad.data.geo.
    radius_neighbours`) is above ``correlation``. Memory: ``block`` × N correlations at a time."""
    z = standardised(grey)
    near = geo.radius_neighbours(utm, utm, radius)
    out = np.zeros(len(z), dtype=bool)
    for start in range(0, len(z), block):
        corr = z[start:start + block] @ z.T
        for row, neighbours in enumerate(near[start:start + block]):
            corr[row, neighbours] = -1.0  # the image itself and its non-negatives are never its negatives
        out[start:start + block] = (corr > correlation).any(1)
    return out


def ambiguous_images(grey: np.ndarray, utm: np.ndarray, radius: float, dark_level: float | None,
                     correlation: float | None) -> dict[str, np.ndarray]:
    """The rules' verdicts on one side, boolean ``(N,)`` each: ``"dark"``, ``"far_duplicate"`` (all False for a rule
    that is off: ``None``) and ``"ambiguous"``, their union."""
    dark = dark_images(grey, dark_level) if dark_level is not None else np.zeros(len(grey), dtype=bool)
    duplicate = far_duplicates(grey, utm, radius, correlation) if correlation is not None else \
        np.zeros(len(grey), dtype=bool)
    return {"dark": dark, "far_duplicate": duplicate, "ambiguous": dark | duplicate}
