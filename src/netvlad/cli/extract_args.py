"""Descriptor-store, k-means-sampling and several-process glue shared by the commands that extract (not a command).

The library does the work (:mod:`netvlad.extract.processes`); these functions only turn arguments into its calls.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from netvlad.cli.common import number
from netvlad.limits import COUNT, NON_NEGATIVE_INT


def add_cluster_images_arg(parser) -> None:
    """``--cluster-images``: database images k-means samples for an off-the-shelf NetVLAD."""
    parser.add_argument("--cluster-images", type=number(COUNT), default=500,
                        help="off-the-shelf NetVLAD: database images sampled for k-means")


def add_extract_args(parser: argparse.ArgumentParser) -> None:
    """Where descriptors are kept, their type, and k-means sampling for an off-the-shelf NetVLAD."""
    group = parser.add_argument_group("descriptors")
    group.add_argument("--store", type=Path, default=None, metavar="DIR",
                       help="keep descriptors here (memory-mapped .npy); a rerun continues an interrupted run")
    group.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="stored descriptor type")
    add_cluster_images_arg(group)


def model_label(args: argparse.Namespace, model) -> str:
    """``checkpoint [fingerprint]`` or ``backbone+pool (off-the-shelf) [fingerprint]``."""
    source = str(args.model) if args.model else f"{model.config.backbone}+{model.config.pool} (off-the-shelf)"
    return f"{source} [{model.fingerprint()}]"


def add_pictures_arg(parser) -> None:
    """``--pictures N``: queries drawn in the retrieval picture (``--no-pictures``: none)."""
    parser.add_argument("--pictures", type=number(NON_NEGATIVE_INT), default=6, metavar="N",
                        help="queries drawn in the retrieval picture (default 6; 0: none)")
    parser.add_argument("--no-pictures", dest="pictures", action="store_const", const=0,
                        help="skip the retrieval picture (as --pictures 0)")


def start(args: argparse.Namespace, store: Path | None, needs: str):
    """``(device, DistInfo)`` of this process: ``--device``, then torchrun's group (see
    :func:`netvlad.extract.processes.join_processes`)."""
    from netvlad.cli.common import pick_device
    from netvlad.extract.processes import join_processes

    return join_processes(pick_device(args.device), store, needs)


def cluster_from_args(model, paths, args: argparse.Namespace, device) -> None:
    """k-means NetVLAD centroids from database images, for a NetVLAD model whose centroids are still random."""
    from netvlad.extract.clusters import ClusterConfig, cluster_if_off_the_shelf

    cluster_if_off_the_shelf(model, paths, ClusterConfig(num_images=args.cluster_images), device,
                             not args.no_progress, args.batch_size, args.workers, getattr(args, "skip_bad", False))


def prepare_model(model, cluster_paths, args: argparse.Namespace, device, info):
    """Off-the-shelf model: NetVLAD k-means (over ``cluster_paths``) on rank 0 only, then rank 0's weights on every
    rank; a checkpoint is used as loaded. Returns the model on ``device``."""
    from netvlad.extract.processes import share_model

    if args.model is not None:
        return model

    def cluster(model) -> None:
        cluster_from_args(model, cluster_paths, args, device)

    return share_model(model, info, device, prepare=cluster)


def fill_stores(model, parts, args: argparse.Namespace, device, info) -> bool:
    """Under torchrun every rank extracts its rows of ``parts`` (see
    :func:`netvlad.extract.processes.extract_on_every_rank`); True where the command goes on."""
    from netvlad.cli.engine_args import engine_from_args
    from netvlad.extract.processes import extract_on_every_rank

    goes_on = extract_on_every_rank(model, parts, info, dtype=getattr(args, "dtype", "float32"),
                                    skip_bad=args.skip_bad, batch_size=args.batch_size, workers=args.workers,
                                    device=device, progress=not args.no_progress, engine=engine_from_args(args))
    if not goes_on:
        leave_quietly()
    return goes_on


def leave_quietly() -> None:
    """End a rank whose rows are written (exit 0) without the interpreter's teardown: after the process group is
    destroyed, torch 2.14's gloo teardown at exit sometimes aborts ("terminate called without an active exception",
    about 1 run in 5 here) while rank 0 is still searching, and torchrun then kills rank 0. Upstream's account
    (pytorch/pytorch#179291, abandoned): gloo's worker threads still hold work objects with Python references,
    whose release during interpreter finalisation aborts; skipping the finalisation avoids it."""
    import logging
    import os
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
