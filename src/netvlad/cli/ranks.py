"""Commands that read a descriptor store (`extract`, `evaluate`, `index build`, `export hloc`) under torchrun.

Every rank runs the same command: it joins the group, takes rank 0's model, and extracts its disjoint block of
rows into the one store (:func:`netvlad.eval.extract.extract_to_store` with the group); then rank 0 alone
searches, builds the index or writes the file, reading the complete store, while the other ranks leave.
Alone (no torchrun) every helper here does what the one-process command always did.
Torch is imported inside the functions only, so ``netvlad --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def start(args: argparse.Namespace, store: Path | None, needs: str):
    """``(device, DistInfo)``: join torchrun's group; under torchrun the store must be given (else the error says
    ``needs``, e.g. ``"netvlad evaluate needs --store DIR"``) and its parent folder visible here (a shared
    filesystem); on CUDA each rank takes ``cuda:LOCAL_RANK``."""
    import torch

    from netvlad.cli.common import pick_device
    from netvlad.errors import BadInputError
    from netvlad.parallel import init_distributed

    device = pick_device(args.device)
    info = init_distributed(device)
    if info.active:
        if store is None:
            raise BadInputError(f"under torchrun {needs}: every one of the "
                                f"{info.world} processes writes its rows of one descriptor store there (a folder "
                                "on a filesystem every process sees)")
        check_shared_parent(store)
        if device.type == "cuda":
            device = torch.device("cuda", info.local_rank)
    return device, info


def check_shared_parent(store: Path) -> None:
    """Several processes: the store's parent folder must already exist here (a shared filesystem is mounted)."""
    from netvlad.errors import BadInputError

    parent = store.absolute().parent
    if not parent.is_dir():
        raise BadInputError(f"{parent}: no such folder on this machine; with torchrun or --shard the store "
                            f"{store} must be on a filesystem every process sees (create or mount it first)",
                            path=parent)


def prepare_model(model, cluster_paths, args: argparse.Namespace, device, info):
    """Off-the-shelf model: NetVLAD k-means (over ``cluster_paths``) on rank 0 only, then rank 0's weights on
    every rank (also random ``--no-pretrained`` ones); a checkpoint is used as loaded. Returns the model on
    ``device``."""
    from netvlad.cli.evaluate import cluster_if_off_the_shelf
    from netvlad.parallel import broadcast_module

    if args.model is None:
        if info.is_main:
            cluster_if_off_the_shelf(model, cluster_paths, args, device)
        model = model.to(device)
        broadcast_module(model, info)
    return model


def fill_stores(model, parts, args: argparse.Namespace, device, info) -> bool:
    """Under torchrun: every rank extracts its rows of each ``(ImageList, folder, desc)`` store in ``parts``.

    Then every rank leaves the group (no collective follows). Returns True where the command goes on (alone, or
    rank 0, which then finds the stores complete and reads them); False on the other ranks: their rows are
    written, they exit 0. They do not wait for rank 0's search, which may outlast a collective's timeout (30 min).
    """
    from netvlad.cli.engine_args import engine_from_args
    from netvlad.eval.extract import extract_to_store
    from netvlad.parallel import shutdown

    if not info.active:
        return True
    for images, folder, desc in parts:
        extract_to_store(model, images.root, images.names, folder, dtype=getattr(args, "dtype", "float32"),
                         skip_bad=args.skip_bad, batch_size=args.batch_size, workers=args.workers, device=device,
                         progress=not args.no_progress and info.is_main, desc=desc, group=info,
                         engine=engine_from_args(args))
    shutdown(info)
    if not info.is_main:
        logger.info("rank %d: its rows are in the store; rank 0 goes on alone", info.rank)
    return info.is_main
