"""`netvlad index build`: a saved geo-tagged database of a dataset's images, searchable by `netvlad query`."""

from __future__ import annotations

import argparse
import logging

from netvlad.cli.options import (
    add_cluster_images_arg,
    add_dataset_args,
    add_device_args,
    add_engine_arg,
    add_index_args,
    add_model_args,
    engine_from_args,
    index_config_from_args,
    max_memory_from_args,
    output,
)

logger = logging.getLogger(__name__)


def build(args: argparse.Namespace) -> int:
    """Describe the database images and write the index folder."""
    from netvlad.cli.options import (
        clustering,
        dataset_from_args,
        model_from_args,
        pick_device,
    )
    from netvlad.data.folders import open_database
    from netvlad.extract.processes import extract_on_every_rank, join_processes, prepare_model
    from netvlad.parallel import leave_quietly
    from netvlad.places.localise import build_place_index

    # OUT/descriptors: the store
    device, info = join_processes(pick_device(args.device), args.out, "netvlad index build needs --out DIR")
    images = dataset_from_args(args, open_database)
    model = prepare_model(model_from_args(args), images.paths(), info, device, **clustering(args))
    engine = engine_from_args(args, model, device, len(images))  # resolved once
    if not extract_on_every_rank(model, [(images, args.out / "descriptors", "database")], info, dtype=args.dtype,
                                 skip_bad=args.skip_bad, batch_size=args.batch_size, workers=args.workers,
                                 device=device, progress=not args.no_progress, engine=engine):
        leave_quietly()  # another rank: its rows are in OUT/descriptors, rank 0 builds the index
    index = build_place_index(model, images, args.out, index_config=index_config_from_args(args, device),
                              dtype=args.dtype, skip_bad=args.skip_bad, batch_size=args.batch_size,
                              workers=args.workers, device=device, progress=not args.no_progress,
                              max_memory=max_memory_from_args(args), engine=engine)
    print(f"indexed {len(index)} images ({index.store.dim}-D, model {index.fingerprint}) in {args.out}")
    return 0


def register(subparsers) -> None:
    """Add ``netvlad index build``."""
    index = subparsers.add_parser("index", help="build a searchable geo-tagged database")
    sub = index.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    parser = sub.add_parser("build", help="describe a dataset's database images and save a faiss index",
                            description="Describe the database images of DATASET (or every image of a folder) "
                                        "and save a faiss index with their positions and the model.")
    add_dataset_args(parser)
    add_model_args(parser)
    add_device_args(parser)
    add_engine_arg(parser)
    add_index_args(parser)
    parser.add_argument("--out", type=output("folder"), required=True,
                        help="index folder to write (a rerun continues)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="stored descriptor type")
    add_cluster_images_arg(parser)
    parser.set_defaults(func=build)
