"""``netvlad data inspect``, ``convert`` and ``route``: look at a dataset, rewrite it as DVGB, or lay out a route."""

from __future__ import annotations

import argparse
import logging

from netvlad.cli.common import number, output
from netvlad.cli.dataset_args import add_dataset_args
from netvlad.cli.route_args import add_route_command
from netvlad.constants import EVAL_RADIUS_M
from netvlad.limits import NON_NEGATIVE_INT, POSITIVE

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add ``data inspect`` and ``data convert``."""
    data = subparsers.add_parser("data", help="inspect or convert a dataset")
    commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    inspect = commands.add_parser("inspect", help="counts, extent, ground truth and image sizes of a dataset; a "
                                              "bag's image, GNSS and odometry topics")
    add_dataset_args(inspect)
    inspect.add_argument("--radius", type=number(POSITIVE), default=EVAL_RADIUS_M,
                         help=f"evaluation radius in metres (default {EVAL_RADIUS_M:g})")
    inspect.add_argument("--sample", type=number(NON_NEGATIVE_INT), default=500,
                         help="images per side whose size is read (0 = all)")
    inspect.set_defaults(func=run_inspect)
    convert = commands.add_parser("convert", help="write a dataset in the DVGB layout (symlinks or copies)")
    add_dataset_args(convert)
    convert.add_argument("--out", required=True, type=output("folder"),
                         help="output folder (images/<split>/{database,queries})")
    convert.add_argument("--copy", action="store_true", help="copy the images instead of symlinking them")
    convert.add_argument("--out-split", default=None, help="split folder to write (default: --split, else test)")
    convert.set_defaults(func=run_convert)
    add_route_command(commands)


def run_inspect(args: argparse.Namespace) -> int:
    """Print the dataset's summary; for a bag, its image, GNSS and odometry topics first (and the dataset's summary
    once ``--image-topic`` names the images)."""
    from netvlad.cli.dataset_args import dataset_from_args, dataset_source
    from netvlad.data.bags.bag import is_bag
    from netvlad.data.summary import summarize

    if is_bag(dataset_source(args)):
        from netvlad.data.bags.inspect import inspect_lines

        print("\n".join(inspect_lines(dataset_source(args))))
        if args.image_topic is None:
            return 0
    dataset = dataset_from_args(args)
    summary = summarize(dataset, radius=args.radius, sample=args.sample, skip_bad=args.skip_bad)
    print("\n".join(summary.lines()))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Write the dataset as DVGB and print where."""
    from netvlad.cli.dataset_args import dataset_from_args
    from netvlad.data.convert import convert_to_dvgb

    dataset = dataset_from_args(args)
    folder = convert_to_dvgb(dataset, args.out, split=args.out_split or args.split or "test", copy=args.copy)
    print(f"wrote {len(dataset.database)} database and {len(dataset.queries)} query images to {folder}")
    return 0
