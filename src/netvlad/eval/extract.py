"""Descriptor extraction: images -> global descriptors, batched through a DataLoader."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from netvlad.data.images import ImageDataset, collate_images
from netvlad.models import PlaceModel

logger = logging.getLogger(__name__)


@torch.inference_mode()
def extract_descriptors(
    model: PlaceModel,
    paths: Sequence[Path | str],
    batch_size: int = 8,
    workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "extract",
) -> np.ndarray:
    """Global descriptors ``(N, output_dim)`` float32 of the images at ``paths``, in the model's preprocessing.

    Images of varying size (resize policy ``"none"``) are run one at a time.
    """
    pre = model.config.preprocessing
    if pre.resize == "none":
        batch_size = 1
    dataset = ImageDataset(paths, pre.resize, pre.size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         collate_fn=collate_images)
    model = model.to(device).eval()
    out = np.zeros((len(dataset), model.output_dim), dtype=np.float32)
    for indices, images, _ in tqdm(loader, desc=desc, disable=not progress, unit="batch"):
        out[indices.numpy()] = model(images.to(device)).float().cpu().numpy()
    return out
