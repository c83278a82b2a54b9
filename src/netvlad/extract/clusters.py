"""Cluster initialisation: sample local descriptors from training images, k-means them, set centroids and α.

The NetVLAD layer itself needs torch alone: it takes centroids (:meth:`NetVLAD.init_from_centroids`); the
k-means that finds them (faiss) lives here. :class:`ClusterConfig` (how many descriptors, the seed) comes first;
torch, numpy and faiss are imported inside the functions, so ``netvlad cluster --help`` shows its defaults without
them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from netvlad.models import PlaceModel
    from netvlad.nn import NetVLAD
    from netvlad.nn.netvlad import RatioAverage


@dataclass(frozen=True)
class ClusterConfig:
    """How many local descriptors to sample for k-means (defaults from the paper's code) and the k-means seed.

    Examples:
        >>> config = ClusterConfig()  # 50,000 descriptors: 100 from each of 500 images
        >>> config.num_descriptors, config.per_image, config.num_images
        (50000, 100, 500)
        >>> ClusterConfig(num_descriptors=0)
        Traceback (most recent call last):
        ...
        ValueError: ClusterConfig.num_descriptors must be ≥ 1, got 0
    """

    num_descriptors: int = 50_000  # in all
    per_image: int = 100  # sampled positions per image
    num_images: int = 500  # images sampled from the training set
    seed: int = 0
    niter: int = 100  # k-means iterations
    ratio_average: str = "geometric"  # α: "geometric" (official closed form) or "arithmetic" (mean ratio 100)
    target_ratio: float = 100.0  # α: the top-1/top-2 soft-assignment ratio it aims at (nn.netvlad.TARGET_RATIO)

    def __post_init__(self) -> None:
        if self.ratio_average not in ("geometric", "arithmetic"):
            raise ValueError(f"ClusterConfig.ratio_average must be geometric or arithmetic, got {self.ratio_average!r}")
        if not self.target_ratio > 1:
            raise ValueError(f"ClusterConfig.target_ratio must be > 1, got {self.target_ratio!r}")
        for name in ("num_descriptors", "per_image", "num_images", "niter"):
            if getattr(self, name) < 1:
                raise ValueError(f"ClusterConfig.{name} must be ≥ 1, got {getattr(self, name)}")


logger = logging.getLogger(__name__)


def kmeans(x: torch.Tensor, k: int, seed: int = 0, niter: int = 100) -> torch.Tensor:
    """Seeded faiss k-means of ``(N, D)`` points -> ``(K, D)`` float64 centroids."""
    import faiss
    import torch

    data = x.detach().cpu().to(torch.float32).contiguous().numpy()
    km = faiss.Kmeans(data.shape[1], k, niter=niter, seed=seed, verbose=False, min_points_per_centroid=1,
                      max_points_per_centroid=max(256, data.shape[0] // k + 1))  # too few points: fit_clusters says
    # so in one line, with what to do, instead of faiss's warning on standard error
    km.train(data)
    return torch.from_numpy(km.centroids.copy()).to(torch.float64)


def init_from_descriptors(layer: NetVLAD, descriptors: torch.Tensor, seed: int = 0, niter: int = 100,
                          ratio_average: RatioAverage = ClusterConfig.ratio_average,
                          target_ratio: float = ClusterConfig.target_ratio) -> float:
    """k-means (seeded) on local descriptors ``(N, D)``, then the layer's centroids, w, b and α; returns α.

    Descriptors are L2-normalised first when the layer's ``normalize_input`` is set.
    """
    import torch

    with torch.no_grad():
        x = layer.prepare(descriptors)
        if x.shape[0] < layer.num_clusters:
            raise ValueError(f"k-means needs at least K={layer.num_clusters} descriptors, got {x.shape[0]}")
        centroids = kmeans(x.to(torch.float32), layer.num_clusters, seed=seed, niter=niter)
        return layer.init_from_centroids(centroids, x, ratio_average=ratio_average, target_ratio=target_ratio)


def sample_local_descriptors(model: PlaceModel, paths: Sequence[Path | str], config: ClusterConfig = ClusterConfig(),
                             skip_bad: bool = False, *, batch_size: int = 8, workers: int = 0,
                             device: torch.device | str = "cpu", progress: bool = False) -> torch.Tensor:
    """Local descriptors ``(N, D)`` float32 from ``model.features()``: ``per_image`` random positions per image.

    An undecodable image stops with an :class:`ImageDecodeError` naming it, or is logged and skipped with ``skip_bad``.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.models import ModelConfig, PlaceModel
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> sample_local_descriptors(model, city.database.paths()[:3], ClusterConfig(per_image=3)).shape
        torch.Size([9, 1280])
    """
    import numpy as np
    import torch
    from tqdm import tqdm

    from netvlad.data.images import ImageDataset, ImageDecodeError, ImageLoader, collate_by_size

    with torch.inference_mode():
        if len(paths) == 0:
            raise ValueError("cluster initialisation needs training images, got none")
        rng = np.random.default_rng(config.seed)
        chosen_paths = _sampled(rng, paths, config)
        pre = model.config.preprocessing
        dataset = ImageDataset(chosen_paths, pre.resize, pre.size, True, pre.fast_decode)  # failures decided below
        loader = ImageLoader(dataset, batch_size=batch_size, num_workers=workers,
                             collate_fn=collate_by_size)
        model = model.to(device).eval()
        samples: list[torch.Tensor] = []
        batches = _decoded(loader, chosen_paths, skip_bad)  # same-size images stacked together
        for images in tqdm(batches, desc="cluster descriptors", disable=not progress, unit="batch"):
            features = model.features(images.to(device)).float().cpu()  # (B, D, h, w)
            for feature in features.flatten(2).transpose(1, 2):  # (h·w, D) per image
                take = min(config.per_image, feature.shape[0])
                samples.append(feature[torch.from_numpy(rng.choice(feature.shape[0], take, replace=False))])
        if not samples:
            raise ImageDecodeError(f"none of the {len(chosen_paths)} images sampled for k-means could be decoded (all "
                                   "skipped)", path=chosen_paths[0] if chosen_paths else None)
        descriptors = torch.cat(samples)
        if descriptors.shape[0] > config.num_descriptors:
            keep = np.sort(rng.choice(descriptors.shape[0], config.num_descriptors, replace=False))
            descriptors = descriptors[torch.from_numpy(keep)]
        logger.info("sampled %d local descriptors from %d images", descriptors.shape[0], len(chosen_paths))
        return descriptors


def _sampled(rng, paths: Sequence[Path | str], config: ClusterConfig) -> list[Path]:
    """The ``num_images`` images (at most) k-means samples descriptors from, in ``paths`` order."""
    import numpy as np

    chosen = np.sort(rng.choice(len(paths), size=min(config.num_images, len(paths)), replace=False))
    return [Path(paths[i]) for i in chosen]


def sampled_images(paths: Sequence[Path | str], config: ClusterConfig = ClusterConfig()) -> list[Path]:
    """The images :func:`sample_local_descriptors` reads local descriptors from (the seed's choice)."""
    import numpy as np

    return _sampled(np.random.default_rng(config.seed), paths, config) if len(paths) else []


MIN_PER_CENTROID = 39  # faiss's own threshold for a trustworthy k-means (it warns below 39 points per centroid)
POSITIONS_WANTED = 32  # feature positions per image after upsampling: 4 × 8 as the Nordland recipe's 128 × 256


def warn_few_descriptors(model: PlaceModel, descriptors: int, images: Sequence[Path]) -> None:
    """One warning line where k-means gets fewer than :data:`MIN_PER_CENTROID` local descriptors per centroid,
    saying what to do: upsample small images (a fixed input size, with the factor that gives each image about
    :data:`POSITIONS_WANTED` feature positions), or sample more images."""
    import math

    from netvlad.data.images import open_image

    k = model.pool.num_clusters
    if descriptors >= MIN_PER_CENTROID * k or not images:
        return
    per_image = descriptors / len(images)
    pre = model.config.preprocessing
    with open_image(Path(images[0])) as image:
        width, height = image.size  # as the model sees it: after the input policy's resize
    if pre.resize == "fixed":
        height, width = pre.size
    elif pre.resize == "longest" and max(width, height) > pre.size[0]:
        scale = pre.size[0] / max(width, height)
        width, height = round(width * scale), round(height * scale)
    if per_image < POSITIONS_WANTED:
        factor = 2 ** math.ceil(math.log2(math.sqrt(POSITIONS_WANTED / max(per_image, 1))))
        fix = (f"the images are small ({width}×{height} pixels give about {per_image:.0f} feature positions each): "
               f"upsample them {factor}×, e.g. resize 'fixed' to {height * factor} × {width * factor} "
               f"(--resize fixed --size {height * factor} {width * factor})")
    else:
        fix = "sample more images (--cluster-images) or descriptors per image"
    logger.warning("k-means of %d local descriptors into K=%d clusters (%.0f per cluster, fewer than %d): the "
                   "centroids are poorly placed; %s", descriptors, k, descriptors / k, MIN_PER_CENTROID, fix)


def _decoded(loader, paths: list[Path], skip_bad: bool):
    """The loader's image batches; an undecodable image raises, or (``skip_bad``) is logged and left out."""
    from netvlad.data.images import SKIP_HINT, ImageDecodeError

    for groups, bad in loader:
        if bad and not skip_bad:
            raise ImageDecodeError(f"{paths[bad[0]]}: cannot decode image (sampled for the k-means of the NetVLAD "
                                   "clusters); fix or remove it, or pass skip_bad=True", path=paths[bad[0]],
                                   hint=SKIP_HINT, skippable=True)
        for i in bad:
            logger.warning("k-means sampling: skipping undecodable image %s", paths[i])
        for _, images in groups:
            yield images


@dataclass(frozen=True)
class ClusterFit:
    """What a cluster initialisation found and what it ran on.

    Examples:
        >>> fit = ClusterFit(alpha=24.1, descriptors=50_000)  # as :func:`fit_clusters` returns it
        >>> fit.alpha, fit.descriptors
        (24.1, 50000)
    """

    alpha: float  # the soft-assignment sharpness set on the layer
    descriptors: int  # local descriptors the k-means ran on (fewer than asked where images are few or small)


def fit_clusters(model: PlaceModel, paths: Sequence[Path | str], config: ClusterConfig = ClusterConfig(),
                 device: torch.device | str = "cpu", progress: bool = False, batch_size: int = 8,
                 workers: int = 0, skip_bad: bool = False) -> ClusterFit:
    """Set the NetVLAD layer's centroids (faiss k-means) and α from images at ``paths``; returns α and the number of
    local descriptors the k-means ran on.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.models import ModelConfig, PlaceModel
        >>> larger = synthetic.CityConfig.preset("tiny", image_size=(256, 192))  # 8 × 6 positions per image
        >>> city = open_dataset(synthetic.generate_city(larger, "larger-city"))
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> fit = fit_clusters(model, city.database.paths()[:4], ClusterConfig(per_image=50, niter=10))
        >>> fit.descriptors, fit.alpha > 0, model.pool.clustered  # 4 images × 48 positions
        (192, True, True)
    """
    from netvlad.nn import NetVLAD

    if not isinstance(model.pool, NetVLAD):
        raise ValueError(f"cluster initialisation needs a NetVLAD model, this one pools with {model.config.pool!r}")
    descriptors = sample_local_descriptors(model, paths, config, skip_bad, batch_size=batch_size, workers=workers,
                                           device=device, progress=progress)
    warn_few_descriptors(model, int(descriptors.shape[0]), sampled_images(paths, config))
    if descriptors.shape[0] < model.pool.num_clusters:
        raise ValueError(f"only {descriptors.shape[0]} local descriptors for K={model.pool.num_clusters} clusters; "
                         "use more images (num_images) or more per image (per_image)")
    alpha = init_from_descriptors(model.pool, descriptors, seed=config.seed, niter=config.niter,
                                  ratio_average=config.ratio_average, target_ratio=config.target_ratio)
    model.pool.to(next(model.parameters()).device)
    logger.info("initialised %d clusters, alpha = %.3f", model.pool.num_clusters, alpha)
    return ClusterFit(alpha, int(descriptors.shape[0]))


def initialize_clusters(model: PlaceModel, paths: Sequence[Path | str], config: ClusterConfig = ClusterConfig(),
                        device: torch.device | str = "cpu", progress: bool = False, batch_size: int = 8,
                        workers: int = 0, skip_bad: bool = False) -> float:
    """Set the NetVLAD layer's centroids (faiss k-means) and α from images at ``paths``; returns α
    (:func:`fit_clusters` also says how many descriptors the k-means ran on).

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.models import ModelConfig, PlaceModel
        >>> larger = synthetic.CityConfig.preset("tiny", image_size=(256, 192))
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> street_views = open_dataset(synthetic.generate_city(larger, "larger-city")).database.paths()
        >>> alpha = initialize_clusters(model, street_views)
        >>> alpha == float(model.pool.alpha), model.pool.clustered
        (True, True)
    """
    return fit_clusters(model, paths, config, device, progress, batch_size, workers, skip_bad).alpha


def needs_clusters(model: PlaceModel) -> bool:
    """True for a NetVLAD model whose centroids are still random (off the shelf, not loaded nor clustered)."""
    from netvlad.nn import NetVLAD

    return isinstance(model.pool, NetVLAD) and not model.pool.clustered


def cluster_if_off_the_shelf(model: PlaceModel, paths: Sequence[Path | str], config: ClusterConfig = ClusterConfig(),
                             device: torch.device | str = "cpu", progress: bool = False, batch_size: int = 8,
                             workers: int = 0, skip_bad: bool = False, cache: Path | str | bool = True) -> bool:
    """k-means NetVLAD centroids from ``paths`` for a NetVLAD model whose centroids are still random -> whether it
    set them (computed, or reused from the cache).

    A model loaded from a checkpoint, or clustered already, is left as it is (``NetVLAD.clustered``); so is any other
    pooling. The result is cached (``cache``: True for :func:`~netvlad.extract.cluster_cache.cluster_cache_folder`,
    a folder, or False for none), keyed by the backbone, K, input policy, sampling and seed and the sampled images'
    content; a later call on the same images reuses it. The ``netvlad`` commands and
    :func:`netvlad.eval.recall.evaluate` call this.
    """
    from netvlad.extract.cluster_cache import CachedClusters, read_clusters, write_clusters

    if not needs_clusters(model):
        return False
    folder, key = cache_entry(model, paths, config, skip_bad, cache)
    cached = read_clusters(folder, key, model.pool.state_dict()) if key else None
    hint = "`netvlad cluster` once, then --model CKPT, fixes them explicitly"
    if cached is not None:
        model.pool.load_state_dict(cached.tensors)
        model.pool.alpha = cached.alpha
        logger.info("off-the-shelf NetVLAD: reused the cached k-means centroids of these database images (K=%d, "
                    "%d local descriptors, alpha = %.3f) from %s; %s", model.pool.num_clusters, cached.descriptors,
                    cached.alpha, folder, hint)
        warn_few_descriptors(model, cached.descriptors, sampled_images(paths, config))  # still true of them
        return True
    logger.info("off-the-shelf NetVLAD (random centroids): clustering local descriptors of %d database images "
                "first", min(len(paths), config.num_images))
    fit = fit_clusters(model, paths, config, device, progress, batch_size, workers, skip_bad)
    if key:
        tensors = {name: t.detach().cpu() for name, t in model.pool.state_dict().items()}
        try:
            written = write_clusters(folder, key, CachedClusters(tensors, fit.alpha, fit.descriptors))
            logger.info("cached the k-means centroids in %s for the next run on these images; %s", written, hint)
        except OSError as error:
            logger.warning("k-means centroids not cached (%s); the next run clusters again", error)
    return True


def cache_entry(model: PlaceModel, paths: Sequence[Path | str], config: ClusterConfig, skip_bad: bool,
                cache: Path | str | bool) -> tuple[Path | None, dict | None]:
    """``(folder, key)`` of the cached k-means result for these arguments, or ``(None, None)`` without a cache (or
    where a sampled image cannot be read: the k-means reports it)."""
    from netvlad.extract.cluster_cache import cluster_cache_folder, cluster_key

    if cache is False or not len(paths):
        return None, None
    folder = cluster_cache_folder() if cache is True else Path(cache)
    try:
        return folder, cluster_key(model, paths, sampled_images(paths, config), config, skip_bad)
    except OSError:
        return None, None
