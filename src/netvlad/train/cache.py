"""The descriptor cache that mining reads: global descriptors of database and query images, float16 by default."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from netvlad.errors import BadInputError
from netvlad.extract.descriptors import extract_descriptors
from netvlad.extract.engine import LIBRARY_ENGINE, Engine
from netvlad.extract.store import Shard
from netvlad.models import PlaceModel
from netvlad.train import cache_check
from netvlad.train.distributed import DistInfo, gather_rows, raise_together, shard
from netvlad.train.frozen import FrozenFeatures, head

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractOptions:
    """How images are run through a model: batch size, loader processes, device, progress bar, the precomputed
    frozen-stage features of those images (then only the trainable head runs, in torch), and the inference engine
    (:func:`netvlad.extract.engine.make_runner`; each process, each rank, runs its own)."""

    batch_size: int = 8
    workers: int = 0
    device: torch.device | str = "cpu"
    progress: bool = False
    frozen: FrozenFeatures | None = None
    engine: Engine = LIBRARY_ENGINE


@torch.inference_mode()
def extract(model: PlaceModel, paths: Sequence[Path], options: ExtractOptions = ExtractOptions(),
            desc: str = "cache") -> np.ndarray:
    """Global descriptors ``(N, output_dim)`` float32 of ``paths`` in the model's preprocessing (eval mode)."""
    if options.frozen is not None:
        return _extract_head(model, paths, options.frozen, options.batch_size, options.device)
    was_training = model.training
    out = extract_descriptors(model, paths, options.batch_size, options.workers, options.device, options.progress,
                              desc, engine=options.engine)  # groups images by size
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
    """Descriptors ``(N, dim)`` of ``paths`` as ``dtype``: in memory, or memory-mapped at ``memmap_path.npy``.

    The memory map is used when the cache is over ``memmap_mb``, and always under torchrun (with a
    ``memmap_path``): then every rank writes its own block of rows into the one file and all ranks read it,
    so 8 ranks on a node hold one copy in the page cache instead of eight. The file must be on a filesystem
    every rank sees (the run folder).
    """
    shape = (len(paths), model.output_dim)
    size_mb = np.prod(shape) * np.dtype(dtype).itemsize / 2**20
    if memmap_path is not None and (info.active or size_mb > memmap_mb):
        return _shared_cache(model, paths, info, options, dtype, Path(f"{memmap_path}.npy"))
    cache = np.empty(shape, dtype=dtype)
    step = max(1, 64 * info.world)  # extract in slices so a float32 copy of the whole never exists
    for start in range(0, len(paths), step * 16):
        block = list(paths[start:start + step * 16])
        cache[start:start + len(block)] = extract_sharded(model, block, info, options).astype(dtype)
    return cache


def _shared_cache(model: PlaceModel, paths: Sequence[Path], info: DistInfo, options: ExtractOptions, dtype: str,
                  path: Path) -> np.memmap:
    """The cache memory-mapped at ``path``, every row checked against its checksum: rebuilt once when damaged."""
    shape = (len(paths), model.output_dim)
    for attempt in range(2):
        _fill_shared(model, paths, info, options, dtype, path)
        problem = cache_check.damage(path, shape, dtype)  # every rank reads the same files: the same verdict
        if problem is None:
            return np.load(path, mmap_mode="r")
        if attempt == 0:
            logger.warning("descriptor cache %s is damaged (%s): rebuilding it", path, problem)
    raise BadInputError(f"{problem}, again after rebuilding the descriptor cache; the run folder's filesystem "
                        "loses or alters writes: train with --out on a reliable local disk", path=path)


def _fill_shared(model: PlaceModel, paths: Sequence[Path], info: DistInfo, options: ExtractOptions, dtype: str,
                 path: Path) -> None:
    """Rank 0 makes fresh cache and checksum files at ``path``; each rank extracts its rows into them."""
    shape = (len(paths), model.output_dim)
    error = None
    try:
        if info.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            cache_check.create(path, shape, dtype)
            logger.info("descriptor cache of %.0f MB (%d × %d %s) memory-mapped at %s",
                        np.prod(shape) * np.dtype(dtype).itemsize / 2**20, *shape, dtype, path)
    except OSError as caught:
        error = caught
    raise_together(error, info, f"creating the descriptor cache {path}")
    try:
        _fill_rows(model, paths, info, options, dtype, path)
    except Exception as caught:  # noqa: BLE001 - re-raised on this rank by raise_together
        error = caught
    raise_together(error, info, f"filling the descriptor cache {path}")


def _fill_rows(model: PlaceModel, paths: Sequence[Path], info: DistInfo, options: ExtractOptions, dtype: str,
               path: Path) -> None:
    """Extract this rank's contiguous block of rows and write them (and their checksums) into the files."""
    if not path.is_file():
        raise BadInputError(f"{path}: rank {info.rank} cannot see the descriptor cache rank 0 created; the run "
                            "folder must be on a filesystem shared by every process (and node)", path=path)
    starts = cache_check.offsets(path)
    rows = Shard(info.rank, info.world).rows(len(paths))
    for start in range(0, len(rows), 1024):  # slices: a float32 copy of the whole never exists
        part = rows[start:start + 1024]
        cache_check.write_block(path, starts, part, extract(model, [paths[i] for i in part], options).astype(dtype))
