"""Multi-process training helpers (torchrun): process group set-up, sharding, gathering rows."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's rank among ``world`` processes (rank 0 alone writes files)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    info = DistInfo(rank=dist.get_rank(), world=dist.get_world_size())
    logger.info("process %d of %d", info.rank, info.world)
    return info


def shard(count: int, info: DistInfo) -> np.ndarray:
    """Indices ``[0, count)`` this rank handles: rank, rank + world, …"""
    return np.arange(info.rank, count, info.world)


def gather_rows(local: np.ndarray, count: int, info: DistInfo) -> np.ndarray:
    """Reassemble ``(count, D)`` rows from every rank's :func:`shard` rows ``(n_rank, D)``; all ranks get all."""
    if not info.active:
        return local
    per_rank = -(-count // info.world)
    padded = torch.zeros(per_rank, local.shape[1], dtype=torch.float32)
    padded[: len(local)] = torch.from_numpy(np.ascontiguousarray(local, dtype=np.float32))
    parts = [torch.empty_like(padded) for _ in range(info.world)]
    dist.all_gather(parts, padded)
    out = np.empty((count, local.shape[1]), dtype=np.float32)
    for rank, part in enumerate(parts):
        rows = np.arange(rank, count, info.world)
        out[rows] = part[: len(rows)].numpy()
    return out


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.active:
        dist.barrier()


def all_sum(value: float, info: DistInfo) -> float:
    """The sum of ``value`` over ranks (NaN if any rank's is NaN)."""
    total = torch.tensor([value], dtype=torch.float64)
    if info.active:
        dist.all_reduce(total)
    return float(total.item())


def shutdown(info: DistInfo) -> None:
    """Leave the process group (after the last collective)."""
    if info.active and dist.is_initialized():
        dist.destroy_process_group()
