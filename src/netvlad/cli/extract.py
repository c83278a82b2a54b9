"""`netvlad extract DATASET --store DIR`: descriptors into a resumable store, in one process or many.

Torch is imported inside :func:`run` only, so ``netvlad --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from netvlad.cli.options import (
    add_cluster_images_arg,
    add_dataset_args,
    add_device_args,
    add_engine_arg,
    add_model_args,
)

logger = logging.getLogger(__name__)

EPILOG = """\
several processes fill one store, each extracting a disjoint block of rows; a rerun continues what is pending:
  torchrun --nproc_per_node 4 -m netvlad.cli.main extract DATASET --store DIR ...
      every rank runs this same command (gloo on CPU, nccl on CUDA: rank r uses cuda:LOCAL_RANK); across
      nodes add torchrun's --nnodes/--rdzv-endpoint, with DIR on a filesystem every node sees
  netvlad extract DATASET --store DIR --shard I/N ...
      without torchrun, e.g. a SLURM job array (--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); each job
      extracts shard I of N and exits; the store is complete when every shard has run
  then: netvlad evaluate DATASET --store DIR ... reads the descriptors instead of extracting them again.
evaluate (--store DIR), index build (its OUT/descriptors) and export hloc (--store DIR) run under torchrun the
same way: every rank extracts its rows into the store, then rank 0 alone searches / builds / writes.
A store remembers how many shards it was planned for: continue it with the same N (or delete it).
Off-the-shelf NetVLAD (no --model) clusters on rank 0 and shares the centroids; --shard jobs each cluster
(seeded), so prefer a --model checkpoint there."""


def parse_shard(text: str):
    """``"I/N"`` -> Shard; argparse reports anything else naming the form ``I/N``."""
    from netvlad.errors import BadInputError
    from netvlad.extract.store import Shard

    try:
        return Shard.parse(text)
    except BadInputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(subparsers) -> None:
    """Add ``netvlad extract``."""
    parser = subparsers.add_parser(
        "extract", help="descriptors of a dataset into a store (torchrun or --shard I/N for many processes)",
        description="Extract global descriptors of a dataset's database and queries into DIR/database and "
                    "DIR/queries (memory-mapped .npy with per-row status), resumable, in one or many processes.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(parser)
    add_model_args(parser)
    add_device_args(parser)
    add_engine_arg(parser)
    group = parser.add_argument_group("store")
    group.add_argument("--store", type=Path, required=True, metavar="DIR",
                       help="descriptor store folder (on a shared filesystem for several processes)")
    group.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="stored descriptor type")
    group.add_argument("--shard", type=parse_shard, default=None, metavar="I/N",
                       help="extract only shard I of N (0 ≤ I < N), for scheduler job arrays; not with torchrun")
    add_cluster_images_arg(group)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Extract the dataset's database and query descriptors into ``--store`` (this rank's or shard's rows)."""
    from netvlad.cli.options import (
        clustering,
        dataset_from_args,
        engine_from_args,
        model_from_args,
        pick_device,
    )
    from netvlad.errors import BadInputError
    from netvlad.extract.descriptors import extract_to_store
    from netvlad.extract.processes import check_shared_parent, join_processes, prepare_model
    from netvlad.parallel import shutdown

    device, info = join_processes(pick_device(args.device), args.store, "--store DIR")
    try:
        if info.active and args.shard is not None:
            raise BadInputError(f"--shard {args.shard} under torchrun: each of the {info.world} ranks already takes "
                                "its shard; drop --shard (or run without torchrun)")
        if args.shard is not None:
            check_shared_parent(args.store)
        dataset = dataset_from_args(args)
        model = prepare_model(model_from_args(args), dataset.database.paths(), info, device, **clustering(args))
        for side, images in (("database", dataset.database), ("queries", dataset.queries)):
            store = extract_to_store(model, images.root, images.names, args.store / side, dtype=args.dtype,
                                     skip_bad=args.skip_bad, batch_size=args.batch_size, workers=args.workers,
                                     device=device, progress=not args.no_progress and info.is_main, desc=side,
                                     shard=args.shard, group=info, engine=engine_from_args(args))
            if info.is_main:
                print(store_line(side, store, args.shard))
    finally:
        shutdown(info)  # also after an error: gloo's threads end here, not in the interpreter's teardown
    return 0


def store_line(side: str, store, shard) -> str:
    """One line: rows done, skipped images (gathered from every process's status), what is left."""
    bad = store.bad()
    line = f"{side}: {store.num_done} of {len(store)} descriptors ({store.dim}-D) in {store.folder}"
    if bad:
        line += f"; {len(bad)} undecodable skipped: {', '.join(bad[:10])}{' …' if len(bad) > 10 else ''}"
    if not store.complete:
        line += f"; {len(store.pending())} rows pending" + (f" (shard {shard} done; run the other shards)"
                                                             if shard is not None else "")
    return line
