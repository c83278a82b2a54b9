"""Outputs of the frozen backbone stages, computed once per image: training then runs only the trainable head.

Stages below ``train_from`` never change (no gradients, batch-norm statistics fixed), so their output per image
is a constant; on MobileNetV2 (train_from 14) they are ~70 % of a forward pass. Needs same-size inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from netvlad.data.images import ImageDataset, ImageLoader, collate_images
from netvlad.models import PlaceModel
from netvlad.train.distributed import DistInfo, gather_rows, shard

logger = logging.getLogger(__name__)


class FrozenFeatures:
    """Frozen-stage outputs ``(N, C, h, w)`` float32 of images, looked up by path."""

    def __init__(self, paths: Sequence[Path], array: np.ndarray) -> None:
        self.row = {Path(p): i for i, p in enumerate(paths)}
        self.array = array

    def __contains__(self, path: Path) -> bool:
        return Path(path) in self.row

    def get(self, paths: Sequence[Path], device: torch.device | str = "cpu") -> torch.Tensor:
        """Stacked frozen features ``(B, C, h, w)`` of ``paths``."""
        rows = [self.row[Path(p)] for p in paths]
        return torch.from_numpy(self.array[rows]).to(device)


def frozen_stages(model: PlaceModel) -> torch.nn.Module:
    return model.backbone.stages[: model.backbone.train_from]


def head(model: PlaceModel, frozen: torch.Tensor) -> torch.Tensor:
    """Global descriptors from frozen features: trainable stages, pooling, whitening -> ``(B, output_dim)``."""
    return model.pool_features(model.backbone.stages[model.backbone.train_from:](frozen))


@torch.inference_mode()
def _compute(model: PlaceModel, paths: Sequence[Path], batch_size: int, workers: int, device, progress: bool):
    pre = model.config.preprocessing
    dataset = ImageDataset(paths, pre.resize, pre.size, fast_decode=pre.fast_decode)
    loader = ImageLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_images)
    stages, out, done, step = frozen_stages(model).eval(), [], 0, max(1000, len(paths) // 10)
    for _, images, _ in tqdm(loader, desc="frozen features", disable=not progress, unit="batch", leave=False):
        out.append(stages(model.normalize(images.to(device))).float().cpu().numpy())
        done += len(images)
        if done // step > (done - len(images)) // step:  # minutes pass at 10⁴ images: say where it stands
            logger.info("frozen features: %d of %d images", done, len(paths))
    return np.concatenate(out)


def compute_frozen(model: PlaceModel, paths: Sequence[Path], info: DistInfo, batch_size: int = 8, workers: int = 0,
                   device: torch.device | str = "cpu", progress: bool = False) -> FrozenFeatures | None:
    """Frozen-stage features of ``paths`` (sharded over ranks, gathered); None when input sizes vary."""
    if model.config.preprocessing.resize != "fixed":
        logger.info("frozen-feature precomputation needs resize='fixed'; running the whole backbone instead")
        return None
    paths = list(dict.fromkeys(Path(p) for p in paths))
    rows = shard(len(paths), info)
    was_training = model.training
    local = _compute(model, [paths[i] for i in rows], batch_size, workers, device, progress)
    model.train(was_training)
    shape = local.shape[1:]
    array = gather_rows(local.reshape(len(local), -1), len(paths), info).reshape(len(paths), *shape)
    logger.info("frozen features of %d images precomputed (%s each, %.0f MB)", len(paths), shape, array.nbytes / 2**20)
    return FrozenFeatures(paths, array)
