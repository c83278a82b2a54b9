"""`netvlad export hloc|onnx|torchscript`: descriptors for hloc, or the whole model for other runtimes."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from netvlad.cli.common import add_device_args, add_model_args, existing, number, output
from netvlad.cli.dataset_args import add_dataset_args
from netvlad.cli.engine_args import add_engine_arg, engine_from_args
from netvlad.cli.extract_args import add_cluster_images_arg
from netvlad.limits import COUNT
from netvlad.models.export import EXPORTERS

logger = logging.getLogger(__name__)


def hloc(args: argparse.Namespace) -> int:
    """Write (or extend) hloc's global-descriptor HDF5 file."""
    from netvlad.cli.common import model_from_args
    from netvlad.cli.dataset_args import check_pair, dataset_options, dataset_source
    from netvlad.cli.extract_args import fill_stores, prepare_model, start
    from netvlad.data.folders import open_image_lists
    from netvlad.eval.hloc import write_hloc_descriptors
    from netvlad.models.export import check_hloc_file

    if not args.overwrite:
        check_hloc_file(args.out)  # before any descriptor is computed
    device, info = start(args, args.store, "netvlad export hloc needs --store DIR")
    check_pair(args)
    lists = open_image_lists(dataset_source(args), positions=False, **dataset_options(args))
    model = prepare_model(model_from_args(args), lists[0].paths(), args, device, info)
    stores = [args.store / f"part{i}" if args.store else None for i in range(len(lists))]
    parts = [(images, store, f"part{i}") for i, (images, store) in enumerate(zip(lists, stores, strict=True))]
    if not fill_stores(model, parts, args, device, info):
        return 0  # another rank: its rows are in the store, rank 0 writes the file
    written, root = write_hloc_descriptors(model, lists, args.out, names_root=args.names_root, stores=stores,
                                           overwrite=args.overwrite, skip_bad=args.skip_bad,
                                           batch_size=args.batch_size, workers=args.workers, device=device,
                                           progress=not args.no_progress,
                                           engine=engine_from_args(args))
    print(f"wrote global descriptors of {written} images to {args.out} (names relative to {root})")
    return 0


def model_export(args: argparse.Namespace) -> int:
    """Write the model as ONNX or TorchScript (and compare onnxruntime with PyTorch on ``--check``)."""
    from netvlad.cli.common import model_from_args
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
