"""The descriptor cache that mining reads: global descriptors of database and query images, float16 by default."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from netvlad.eval.extract import extract_descriptors
from netvlad.models import PlaceModel
from netvlad.train.distributed import DistInfo, gather_rows, shard
from netvlad.train.frozen import FrozenFeatures, head

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractOptions:
    """How images are run through a model: batch size, loader processes, device, progress bar, and the
    precomputed frozen-stage features of those images (then only the trainable head runs)."""

    batch_size: int = 8
    workers: int = 0
    device: torch.device | str = "cpu"
    progress: bool = False
    frozen: FrozenFeatures | None = None


@torch.inference_mode()
def extract(model: PlaceModel, paths: Sequence[Path], options: ExtractOptions = ExtractOptions(),
            desc: str = "cache") -> np.ndarray:
    """Global descriptors ``(N, output_dim)`` float32 of ``paths`` in the model's preprocessing (eval mode)."""
    if options.frozen is not None:
        return _extract_head(model, paths, options.frozen, options.batch_size, options.device)
    was_training = model.training
    out = extract_descriptors(model, paths, options.batch_size, options.workers, options.device, options.progress,
                              desc)  # groups images by size
    model.train(was_training)
    return out


def _extract_head(model: PlaceModel, paths: Sequence[Path], frozen: FrozenFeatures, batch_size: int,
                  device) -> np.ndarray:
    was_training = model.training
    model.eval()
    out = np.zeros((len(paths), model.output_dim), dtype=np.float32)
    for start in range(0, len(paths), batch_size):
        batch = frozen.get(paths[start:start + batch_size], device)
        out[start:start + len(batch)] = head(model, batch).float().cpu().numpy()
    model.train(was_training)
    return out


def extract_sharded(model: PlaceModel, paths: Sequence[Path], info: DistInfo,
                    options: ExtractOptions = ExtractOptions(), desc: str = "cache") -> np.ndarray:
    """:func:`extract` with the images split across ranks and gathered: every rank gets ``(N, dim)`` float32."""
    rows = shard(len(paths), info)
    local = extract(model, [paths[i] for i in rows], options, desc)
    return gather_rows(local, len(paths), info)


def build_cache(model: PlaceModel, paths: Sequence[Path], info: DistInfo, options: ExtractOptions = ExtractOptions(),
                dtype: str = "float16", memmap_path: Path | None = None, memmap_mb: float = 1024.0) -> np.ndarray:
    """Descriptors ``(N, dim)`` of ``paths`` as ``dtype``; memory-mapped at ``memmap_path`` when over ``memmap_mb``."""
    shape = (len(paths), model.output_dim)
    size_mb = np.prod(shape) * np.dtype(dtype).itemsize / 2**20
    if memmap_path is not None and size_mb > memmap_mb:
        memmap_path = Path(f"{memmap_path}.rank{info.rank}.npy")  # scratch, one per process
        memmap_path.parent.mkdir(parents=True, exist_ok=True)
        cache = np.lib.format.open_memmap(memmap_path, mode="w+", dtype=dtype, shape=shape)
        logger.info("descriptor cache of %.0f MB memory-mapped at %s", size_mb, memmap_path)
    else:
        cache = np.empty(shape, dtype=dtype)
    step = max(1, 64 * info.world)  # extract in slices so a float32 copy of the whole never exists
    for start in range(0, len(paths), step * 16):
        block = list(paths[start:start + step * 16])
        cache[start:start + len(block)] = extract_sharded(model, block, info, options).astype(dtype)
    return cache
