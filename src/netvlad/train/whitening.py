"""PCA whitening after training: fitted once on the final model's database descriptors and shared by every rank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from netvlad.models import PlaceModel
from netvlad.nn import PCAWhitening
from netvlad.train.cache import ExtractOptions, extract_sharded
from netvlad.train.distributed import DistInfo, broadcast_module

WHITENING_IMAGES = 10_000  # PCA whitening is fitted on at most this many database images (n×n Gram when n < D)


def fit_whitening(model: PlaceModel, paths: list[Path], dim: int, seed: int, info: DistInfo,
                  extraction: ExtractOptions) -> None:
    """Fit ``dim``-D PCA whitening on the descriptors of ``paths`` (a seeded sample of at most
    :data:`WHITENING_IMAGES`) and set it on ``model``."""
    if len(paths) > WHITENING_IMAGES:  # a seeded sample: all of Pittsburgh-250k would be 32 GB per rank
        keep = np.random.default_rng(seed).choice(len(paths), WHITENING_IMAGES, replace=False)
        paths = [paths[i] for i in np.sort(keep)]
    descriptors = extract_sharded(model, paths, info, extraction, desc="whitening")
    whitening = PCAWhitening(model.pool.output_dim, dim)
    if info.is_main:  # one fit, shared: the float64 n×n Gram + eigh took minutes per rank at 7,570 images
        whitening.fit(torch.from_numpy(descriptors))
    broadcast_module(whitening, info)
    model.set_whitening(whitening.to(extraction.device))
