"""Processes working together (torchrun): who this process is, and the few collectives extraction and training need.

Launched by ``torchrun`` (``WORLD_SIZE`` > 1) every process joins one group (gloo on CPU, nccl on CUDA);
alone, every helper here is a no-op, so the same code runs in one process or many.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's ``rank`` among ``world`` processes, and its ``local_rank`` on its machine (rank 0 writes)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl (+ gloo) on CUDA.

    On CUDA each rank's current device becomes ``cuda:LOCAL_RANK``, so a plain ``"cuda"`` device is its own GPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        bind_world_defaults()
        if device.type == "cuda":  # "cuda" means this rank's GPU; small CPU collectives (flags, tuples) go via gloo
            torch.cuda.set_device(local_rank)
            dist.init_process_group(backend="cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group(backend="gloo")
    info = DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank)
    logger.info("process %d of %d", info.rank, info.world)
    return info


def bind_world_defaults() -> None:
    """Import, before a group exists, the torch modules whose functions take ``group=group.WORLD`` as a default.

    A default argument is evaluated once, at import: imported while a group exists (``import torchvision`` pulls
    in torch.distributed.nn through torch._dynamo), those functions keep the default group alive for good, so
    ``destroy_process_group`` cannot free it and gloo's threads (two workers and the TCP loop) run on into the
    interpreter's teardown, where the group is finally destroyed and the process sometimes aborts with
    "terminate called without an active exception". Imported first, the defaults hold None.
    """
    import torch.distributed.nn  # noqa: F401 - broadcast, all_reduce, … with group=group.WORLD
    import torch.distributed.optim  # noqa: F401 - ZeroRedundancyOptimizer's _broadcast_object


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


def raise_together(error: BaseException | None, info: DistInfo, what: str) -> None:
    """Collective: re-raise this rank's ``error``, or fail every rank when another rank failed while ``what``.

    Every rank must call it (it is an all-reduce), so no rank waits forever on a rank that gave up.
    """
    failed = all_sum(1.0 if error is not None else 0.0, info)
    if error is not None:
        raise error
    if failed:
        raise RuntimeError(f"{int(failed)} other process(es) failed while {what}; see their error above")


def broadcast_module(module: torch.nn.Module, info: DistInfo, source: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``source`` to all ranks (no-op alone)."""
    if not info.active:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=source)


def shutdown(info: DistInfo) -> None:
    """Leave the process group (after the last collective, or on the way out after an error): its threads end here,
    not in the interpreter's teardown (see :func:`bind_world_defaults`)."""
    if info.active and dist.is_initialized():
        dist.destroy_process_group()


def leave_quietly() -> None:
    """End a rank whose rows are written (exit 0) without the interpreter's teardown: after the process group is
    destroyed, torch 2.14's gloo teardown at exit sometimes aborts ("terminate called without an active exception",
    about 1 run in 5 here) while rank 0 is still searching, and torchrun then kills rank 0. Upstream's account
    (pytorch/pytorch#179291, abandoned): gloo's worker threads still hold work objects with Python references,
    whose release during interpreter finalisation aborts; skipping the finalisation avoids it. Since
    :func:`bind_world_defaults`, :func:`shutdown` ends gloo's threads itself; this stays a guard for the ranks that
    leave while rank 0 works."""
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
