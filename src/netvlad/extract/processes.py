"""Several processes on one descriptor store (torchrun): join, share rank 0's model, extract every rank's rows.

Every rank runs the same step: :func:`join_processes` joins torchrun's group (checking the store is on a shared
filesystem), :func:`share_model` gives every rank rank 0's weights (after an optional rank-0-only preparation,
e.g. k-means), and :func:`extract_on_every_rank` writes each rank's disjoint block of rows into the stores and
leaves the group; rank 0 then goes on alone (search, index, hloc file) reading the complete stores. Alone (no
torchrun) each function does what one process always did. Torch is imported inside the functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from netvlad.errors import BadInputError

logger = logging.getLogger(__name__)


def check_shared_parent(store: Path) -> None:
    """Several processes: the store's parent folder must already exist here (a shared filesystem is mounted)."""
    parent = Path(store).absolute().parent
    if not parent.is_dir():
        raise BadInputError(f"{parent}: no such folder on this machine; with several processes the store "
                            f"{store} must be on a filesystem every process sees (create or mount it first)",
                            path=parent, hint="with torchrun or --shard, put --store on a shared filesystem")


def join_processes(device, store: Path | None, needs: str = "give a descriptor store folder"):
    """``(device, DistInfo)``: join torchrun's group; under torchrun ``store`` must be given (else the error says
    ``needs``) and its parent folder visible here; on CUDA each rank takes ``cuda:LOCAL_RANK``."""
    import torch

    from netvlad.parallel import init_distributed

    info = init_distributed(device)
    if info.active:
        if store is None:
            raise BadInputError(f"under torchrun {needs}: every one of the {info.world} processes writes its rows "
                                "of one descriptor store there (a folder on a filesystem every process sees)")
        check_shared_parent(store)
        if device.type == "cuda":
            device = torch.device("cuda", info.local_rank)
    return device, info


def share_model(model, info, device, prepare: Callable[[Any], None] | None = None):
    """``model`` on ``device`` with rank 0's weights on every rank; ``prepare(model)`` (e.g. k-means of an
    off-the-shelf NetVLAD) runs on rank 0 only, before the weights are sent."""
    from netvlad.parallel import broadcast_module

    if prepare is not None and info.is_main:
        prepare(model)
    model = model.to(device)
    broadcast_module(model, info)
    return model


def prepare_model(model, cluster_paths: Sequence[Path | str], info, device, config=None, progress: bool = False,
                  batch_size: int = 8, workers: int = 0, skip_bad: bool = False, cache: Path | str | bool = True):
    """``model`` on ``device`` with rank 0's weights on every rank, after k-means of an off-the-shelf NetVLAD over
    ``cluster_paths`` on rank 0 (:func:`netvlad.extract.clusters.cluster_if_off_the_shelf` decides; ``config``: a
    :class:`~netvlad.extract.clusters.ClusterConfig`, default its defaults; ``cache``: where its result is cached).
    A checkpoint's model is only shared."""
    from netvlad.extract.clusters import ClusterConfig, cluster_if_off_the_shelf

    def cluster(model) -> None:
        cluster_if_off_the_shelf(model, cluster_paths, config or ClusterConfig(), device, progress, batch_size,
                                 workers, skip_bad, cache=cache)

    return share_model(model, info, device, prepare=cluster)


def extract_on_every_rank(model, parts: Sequence[tuple[Any, Path, str]], info, **extract) -> bool:
    """Under torchrun: every rank extracts its rows of each ``(ImageList, store folder, label)`` in ``parts``
    (``extract``: :func:`netvlad.extract.descriptors.extract_to_store` options), then leaves the group.

    Returns True where the work goes on (alone, or rank 0, which then finds the stores complete); False on the other
    ranks, whose rows are written. They do not wait for rank 0, whose search may outlast a collective's timeout.
    """
    from netvlad.extract.descriptors import extract_to_store
    from netvlad.parallel import shutdown

    if not info.active:
        return True
    progress = extract.pop("progress", False) and info.is_main
    try:
        for images, folder, label in parts:
            extract_to_store(model, images.root, images.names, folder, desc=label, group=info, progress=progress,
                             **extract)
    finally:
        shutdown(info)  # also after an error: gloo's threads end here, not in the interpreter's teardown
    if not info.is_main:
        logger.info("rank %d: its rows are in the store; rank 0 goes on alone", info.rank)
    return info.is_main
