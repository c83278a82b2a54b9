"""Cluster initialisation: sample local descriptors from training images, k-means them, set centroids and α.

The NetVLAD layer itself needs torch alone: it takes centroids (:meth:`NetVLAD.init_from_centroids`); the
k-means that finds them (faiss) lives here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch
from tqdm import tqdm

from netvlad.data.images import ImageDataset, ImageLoader, collate_by_size
from netvlad.models import PlaceModel
from netvlad.nn import NetVLAD
from netvlad.nn.netvlad import DEFAULT_RATIO_AVERAGE, RatioAverage
from netvlad.train.cache import ExtractOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterConfig:
    """How many local descriptors to sample for k-means (defaults from the paper's code) and the k-means seed."""

    num_descriptors: int = 50_000  # in all
    per_image: int = 100  # sampled positions per image
    num_images: int = 500  # images sampled from the training set
    seed: int = 0
    niter: int = 100  # k-means iterations
    ratio_average: RatioAverage = DEFAULT_RATIO_AVERAGE  # α: "geometric" (official closed form) or "arithmetic"

    def __post_init__(self) -> None:
        if self.ratio_average not in ("geometric", "arithmetic"):
            raise ValueError(f"ClusterConfig.ratio_average must be geometric or arithmetic, got {self.ratio_average!r}")
        for name in ("num_descriptors", "per_image", "num_images", "niter"):
            if getattr(self, name) < 1:
                raise ValueError(f"ClusterConfig.{name} must be ≥ 1, got {getattr(self, name)}")


def kmeans(x: torch.Tensor, k: int, seed: int = 0, niter: int = 100) -> torch.Tensor:
    """Seeded faiss k-means of ``(N, D)`` points -> ``(K, D)`` float64 centroids."""
    data = x.detach().cpu().to(torch.float32).contiguous().numpy()
    km = faiss.Kmeans(data.shape[1], k, niter=niter, seed=seed, verbose=False,
                      max_points_per_centroid=max(256, data.shape[0] // k + 1))
    km.train(data)
    return torch.from_numpy(km.centroids.copy()).to(torch.float64)


@torch.no_grad()
def init_from_descriptors(layer: NetVLAD, descriptors: torch.Tensor, seed: int = 0, niter: int = 100,
                          ratio_average: RatioAverage = DEFAULT_RATIO_AVERAGE) -> float:
    """k-means (seeded) on local descriptors ``(N, D)``, then the layer's centroids, w, b and α; returns α.

    Descriptors are L2-normalised first when the layer's ``normalize_input`` is set.
    """
    x = layer.prepare(descriptors)
    if x.shape[0] < layer.num_clusters:
        raise ValueError(f"k-means needs at least K={layer.num_clusters} descriptors, got {x.shape[0]}")
    centroids = kmeans(x.to(torch.float32), layer.num_clusters, seed=seed, niter=niter)
    return layer.init_from_centroids(centroids, x, ratio_average=ratio_average)


@torch.inference_mode()
def sample_local_descriptors(model: PlaceModel, paths: Sequence[Path | str], config: ClusterConfig = ClusterConfig(),
                             options: ExtractOptions | None = None) -> torch.Tensor:
    """Local descriptors ``(N, D)`` float32 from ``model.features()``: ``per_image`` random positions per image."""
    options = options or ExtractOptions()
    if len(paths) == 0:
        raise ValueError("cluster initialisation needs training images, got none")
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.choice(len(paths), size=min(config.num_images, len(paths)), replace=False))
    pre = model.config.preprocessing
    dataset = ImageDataset([paths[i] for i in chosen], pre.resize, pre.size)
    loader = ImageLoader(dataset, batch_size=options.batch_size, num_workers=options.workers,
                         collate_fn=collate_by_size)
    model = model.to(options.device).eval()
    samples: list[torch.Tensor] = []
    batches = (images for groups, _ in loader for _, images in groups)  # same-size images stacked together
    for images in tqdm(batches, desc="cluster descriptors", disable=not options.progress, unit="batch"):
        features = model.features(images.to(options.device)).float().cpu()  # (B, D, h, w)
        for feature in features.flatten(2).transpose(1, 2):  # (h·w, D) per image
            take = min(config.per_image, feature.shape[0])
            samples.append(feature[torch.from_numpy(rng.choice(feature.shape[0], take, replace=False))])
    descriptors = torch.cat(samples)
    if descriptors.shape[0] > config.num_descriptors:
        keep = np.sort(rng.choice(descriptors.shape[0], config.num_descriptors, replace=False))
        descriptors = descriptors[torch.from_numpy(keep)]
    logger.info("sampled %d local descriptors from %d images", descriptors.shape[0], len(chosen))
    return descriptors


def initialize_clusters(model: PlaceModel, paths: Sequence[Path | str], config: ClusterConfig = ClusterConfig(),
                        device: torch.device | str = "cpu", progress: bool = False, batch_size: int = 8,
                        workers: int = 0) -> float:
    """Set the NetVLAD layer's centroids (faiss k-means) and α from images at ``paths``; returns α."""
    if not isinstance(model.pool, NetVLAD):
        raise ValueError(f"cluster initialisation needs a NetVLAD model, this one pools with {model.config.pool!r}")
    options = ExtractOptions(batch_size=batch_size, workers=workers, device=device, progress=progress)
    descriptors = sample_local_descriptors(model, paths, config, options)
    if descriptors.shape[0] < model.pool.num_clusters:
        raise ValueError(f"only {descriptors.shape[0]} local descriptors for K={model.pool.num_clusters} clusters; "
                         "use more images (num_images) or more per image (per_image)")
    alpha = init_from_descriptors(model.pool, descriptors, seed=config.seed, niter=config.niter,
                                  ratio_average=config.ratio_average)
    model.pool.to(next(model.parameters()).device)
    logger.info("initialised %d clusters, alpha = %.3f", model.pool.num_clusters, alpha)
    return alpha
