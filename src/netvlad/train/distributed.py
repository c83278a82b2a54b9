"""Multi-process training helpers (torchrun): sharding and gathering rows; the process group is netvlad.parallel."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.distributed as dist

from netvlad.parallel import DistInfo, all_sum, barrier, broadcast_module, init_distributed, raise_together, shutdown

logger = logging.getLogger(__name__)

__all__ = ["DistInfo", "all_sum", "barrier", "broadcast_module", "gather_rows", "init_distributed", "raise_together",
           "shard", "shutdown"]


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
