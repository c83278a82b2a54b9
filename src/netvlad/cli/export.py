"""`netvlad export hloc|onnx|torchscript`: descriptors for hloc, or the whole model for other runtimes."""

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
    engine_from_args,
    existing,
    number,
    output,
)
from netvlad.limits import COUNT
from netvlad.models.export import EXPORTERS

logger = logging.getLogger(__name__)


def hloc(args: argparse.Namespace) -> int:
    """Write (or extend) hloc's global-descriptor HDF5 file."""
    from netvlad.cli.options import (
        clustering,
        dataset_from_args,
        model_from_args,
        pick_device,
    )
    from netvlad.data.folders import open_image_lists
    from netvlad.eval.hloc import write_hloc_descriptors
    from netvlad.extract.processes import extract_on_every_rank, join_processes, prepare_model
    from netvlad.models.export import check_hloc_file
    from netvlad.parallel import leave_quietly

    if not args.overwrite:
        check_hloc_file(args.out)  # before any descriptor is computed
    device, info = join_processes(pick_device(args.device), args.store, "netvlad export hloc needs --store DIR")
    lists = dataset_from_args(args, open_image_lists, positions=False)
    model = prepare_model(model_from_args(args), lists[0].paths(), info, device, **clustering(args))
    engine = engine_from_args(args, model, device, sum(len(images) for images in lists))  # resolved once
    stores = [args.store / f"part{i}" if args.store else None for i in range(len(lists))]
    parts = [(images, store, f"part{i}") for i, (images, store) in enumerate(zip(lists, stores, strict=True))]
    if not extract_on_every_rank(model, parts, info, dtype="float32", skip_bad=args.skip_bad,
                                 batch_size=args.batch_size, workers=args.workers, device=device,
                                 progress=not args.no_progress, engine=engine):
        leave_quietly()  # another rank: its rows are in the store, rank 0 writes the file
    written, root = write_hloc_descriptors(model, lists, args.out, names_root=args.names_root, stores=stores,
                                           overwrite=args.overwrite, skip_bad=args.skip_bad,
                                           batch_size=args.batch_size, workers=args.workers, device=device,
                                           progress=not args.no_progress, engine=engine)
    print(f"wrote global descriptors of {written} images to {args.out} (names relative to {root})")
    return 0


def model_export(args: argparse.Namespace) -> int:
    """Write the model as ONNX or TorchScript (and compare onnxruntime with PyTorch on ``--check``)."""
    from netvlad.cli.options import model_from_args
    from netvlad.data.images import load_image
    from netvlad.models.export import onnx_max_difference
    from netvlad.nn import NetVLAD

    model = model_from_args(args)
    if args.model is None and isinstance(model.pool, NetVLAD):
        logger.warning("exporting an off-the-shelf NetVLAD with random centroids; export a trained or clustered "
                       "checkpoint (`netvlad cluster`) instead")
    pre = model.config.preprocessing
    height, width = pre.size if pre.resize == "fixed" else (args.height, args.width)
    path = EXPORTERS[args.model_format](model, args.out, height=height, width=width)
    print(f"wrote {args.model_format} model to {path}")
    if args.model_format == "onnx" and args.check:
        images = load_image(args.check, pre.resize, pre.size, pre.fast_decode)[None]
        print(f"onnxruntime vs PyTorch max abs difference on {args.check}: "
              f"{onnx_max_difference(model, path, images):.2e}")
    return 0


def register(subparsers) -> None:
    """Add ``netvlad export hloc|onnx|torchscript``."""
    export = subparsers.add_parser("export", help="hloc descriptors, or the model as ONNX/TorchScript")
    sub = export.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    parser = sub.add_parser("hloc", help="global descriptors in hloc's HDF5 layout (pairs_from_retrieval reads it)")
    add_dataset_args(parser)
    add_model_args(parser)
    add_device_args(parser)
    add_engine_arg(parser)
    parser.add_argument("--out", type=output(), required=True, help="HDF5 file (e.g. global-feats-netvlad.h5)")
    parser.add_argument("--names-root", default=None, metavar="DIR",
                        help="names are relative to this folder (default: the common parent of all images)")
    parser.add_argument("--store", type=Path, default=None, help="keep descriptors here (resumable)")
    parser.add_argument("--overwrite", action="store_true", help="replace the file instead of extending it")
    add_cluster_images_arg(parser)
    parser.set_defaults(func=hloc)
    for name in EXPORTERS.names():
        parser = sub.add_parser(name, help=EXPORTERS.help(name))
        add_model_args(parser)
        parser.add_argument("--out", type=output(), required=True, help=f"{name} file to write")
        parser.add_argument("--height", type=number(COUNT), default=480,
                            help="example height traced in pixels (any size runs)")
        parser.add_argument("--width", type=number(COUNT), default=640,
                            help="example width traced in pixels (any size runs)")
        if name == "onnx":
            parser.add_argument("--check", type=existing("file", "image"), default=None, metavar="IMAGE",
                                help="compare onnxruntime with PyTorch on this photo")
        parser.set_defaults(func=model_export, model_format=name, check=None)
