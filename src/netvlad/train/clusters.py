"""Cluster initialisation: sample local descriptors from training images, k-means them, set centroids and α."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from netvlad.data.images import ImageDataset, ImageLoader, collate_by_size
from netvlad.models import PlaceModel
from netvlad.nn import NetVLAD

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterConfig:
    """How many local descriptors to sample for k-means (defaults from the paper's code) and the k-means seed."""

    num_descriptors: int = 50_000  # in all
    per_image: int = 100  # sampled positions per image
    num_images: int = 500  # images sampled from the training set
    seed: int = 0
    niter: int = 100  # k-means iterations

    def __post_init__(self) -> None:
        for name in ("num_descriptors", "per_image", "num_images", "niter"):
            if getattr(self, name) < 1:
                raise ValueError(f"ClusterConfig.{name} must be ≥ 1, got {getattr(self, name)}")


@torch.inference_mode()
def sample_local_descriptors(
    model: PlaceModel,
    paths: Sequence[Path | str],
    config: ClusterConfig = ClusterConfig(),
    device: torch.device | str = "cpu",
    progress: bool = False,
    batch_size: int = 8,
    workers: int = 0,
) -> torch.Tensor:
    """Local descriptors ``(N, D)`` float32 from ``model.features()``: ``per_image`` random positions per image."""
    if len(paths) == 0:
        raise ValueError("cluster initialisation needs training images, got none")
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.choice(len(paths), size=min(config.num_images, len(paths)), replace=False))
    pre = model.config.preprocessing
    dataset = ImageDataset([paths[i] for i in chosen], pre.resize, pre.size)
    loader = ImageLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_by_size)
    model = model.to(device).eval()
    samples: list[torch.Tensor] = []
    batches = (images for groups, _ in loader for _, images in groups)  # same-size images stacked together
    for images in tqdm(batches, desc="cluster descriptors", disable=not progress, unit="batch"):
        features = model.features(images.to(device)).float().cpu()  # (B, D, h, w)
        for feature in features.flatten(2).transpose(1, 2):  # (h·w, D) per image
            take = min(config.per_image, feature.shape[0])
            samples.append(feature[torch.from_numpy(rng.choice(feature.shape[0], take, replace=False))])
    descriptors = torch.cat(samples)
    if descriptors.shape[0] > config.num_descriptors:
        keep = np.sort(rng.choice(descriptors.shape[0], config.num_descriptors, replace=False))
        descriptors = descriptors[torch.from_numpy(keep)]
    logger.info("sampled %d local descriptors from %d images", descriptors.shape[0], len(chosen))
    return descriptors


def initialize_clusters(
    model: PlaceModel,
    paths: Sequence[Path | str],
    config: ClusterConfig = ClusterConfig(),
    device: torch.device | str = "cpu",
    progress: bool = False,
    batch_size: int = 8,
    workers: int = 0,
) -> float:
    """Set the NetVLAD layer's centroids (faiss k-means) and α from images at ``paths``; returns α."""
    if not isinstance(model.pool, NetVLAD):
        raise ValueError(f"cluster initialisation needs a NetVLAD model, this one pools with {model.config.pool!r}")
    descriptors = sample_local_descriptors(model, paths, config, device, progress, batch_size, workers)
    if descriptors.shape[0] < model.pool.num_clusters:
        raise ValueError(f"only {descriptors.shape[0]} local descriptors for K={model.pool.num_clusters} clusters; "
                         "use more images (num_images) or more per image (per_image)")
    alpha = model.pool.init_from_descriptors(descriptors, seed=config.seed, niter=config.niter)
    model.pool.to(next(model.parameters()).device)
    logger.info("initialised %d clusters, alpha = %.3f", model.pool.num_clusters, alpha)
    return alpha
