"""``netvlad data inspect``, ``convert`` and ``route``: look at a dataset, rewrite it as DVGB, or lay out a route."""

from __future__ import annotations

import argparse
import logging

from netvlad.cli.options import add_dataset_args, existing, number, output
from netvlad.constants import EVAL_RADIUS_M
from netvlad.limits import COUNT, NON_NEGATIVE_INT, POSITIVE

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add ``data inspect``, ``data convert`` and ``data route``."""
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
    from netvlad.cli.options import dataset_from_args, dataset_source
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
    from netvlad.cli.options import dataset_from_args
    from netvlad.data.convert import convert_to_dvgb

    dataset = dataset_from_args(args)
    folder = convert_to_dvgb(dataset, args.out, split=args.out_split or args.split or "test", copy=args.copy)
    print(f"wrote {len(dataset.database)} database and {len(dataset.queries)} query images to {folder}")
    return 0


def add_route_command(commands) -> None:
    """Add ``data route`` to the ``data`` sub-commands."""
    route = commands.add_parser("route", help="lay out two traverses (e.g. day_left then day_right) as one stream",
                                description="Write FIRST's frames then SECOND's as one stream (frames/ with a "
                                            "frames.csv of times and positions along the route), so that "
                                            "`netvlad stream` finds the revisits and scores them.")
    route.add_argument("first", type=existing("folder", "first traverse"), help="first traverse (frame folder)")
    route.add_argument("second", type=existing("folder", "second traverse"),
                       help="second traverse: the same frame names for the same places")
    route.add_argument("--out", required=True, type=output("folder"), help="output folder (OUT/frames)")
    route.add_argument("--every", type=number(COUNT), default=1, help="keep one place in N")
    route.add_argument("--limit", type=number(COUNT), default=None, help="keep the first N places (after --every)")
    route.add_argument("--fps", type=number(POSITIVE), default=1.0, help="stream frames per second (times)")
    route.add_argument("--spacing", type=number(POSITIVE), default=1.0,
                       help="metres between neighbouring places (positions along the route)")
    route.add_argument("--copy", action="store_true", help="copy the images instead of symlinking them")
    route.set_defaults(func=run_route)


def run_route(args: argparse.Namespace) -> int:
    """Write the route and say where."""
    from netvlad.data.route import RouteConfig, write_route

    config = RouteConfig(every=args.every, limit=args.limit, fps=args.fps, spacing=args.spacing, copy=args.copy)
    frames = write_route(args.first, args.second, args.out, config)
    count = sum(1 for p in frames.iterdir() if p.name != "frames.csv")
    print(f"wrote a route of {count} frames ({args.first.name} then {args.second.name}) to {frames}")
    return 0
