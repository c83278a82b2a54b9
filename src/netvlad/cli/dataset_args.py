"""The dataset arguments every command shares: ``DATASET`` plus how to read it."""

from __future__ import annotations

import argparse
from pathlib import Path

from netvlad.cli.common import existing, number
from netvlad.data.formats import READERS
from netvlad.limits import COUNT, NON_NEGATIVE_INT, POSITIVE


def add_dataset_args(parser: argparse.ArgumentParser, positional: bool = True, optional: bool = False) -> None:
    """Add ``DATASET`` (or ``--dataset`` when ``positional`` is False; may be left out when ``optional``) and the
    reader options."""
    if positional:  # left out with --database RUN1.bag --queries RUN2.bag (two bags named by their paths)
        parser.add_argument("dataset", metavar="DATASET", nargs="?", type=existing(what="dataset"),
                            help="dataset folder or file: DVGB folder, .mat dbStruct, .csv manifest, EXIF photo "
                                 "folder, a ROS bag (.bag, .mcap, ROS 2 folder), or a sequence folder with "
                                 "--database/--queries")
    else:
        parser.add_argument("--dataset", required=True, metavar="DATASET", type=existing(what="dataset"),
                            help="dataset folder or file")
    group = parser.add_argument_group("dataset")
    group.add_argument("--format", choices=READERS.names(), default=None,
                       help="force a format (default: detect): " + READERS.describe())
    group.add_argument("--split", default=None, help="DVGB / .mat split: train, val or test (default: test)")
    group.add_argument("--database", default=None, metavar="FOLDER",
                       help="database sub-folder (sequences: e.g. summer; .mat: under --image-root)")
    group.add_argument("--queries", default=None, metavar="FOLDER", help="query sub-folder (e.g. winter)")
    group.add_argument("--image-root", default=None, metavar="DIR", type=existing("folder"),
                       help=".mat / CSV image root (default: its folder)")
    group.add_argument("--frame-tolerance", type=number(NON_NEGATIVE_INT), default=None, metavar="K",
                       help="sequences: ±K frames count as correct (default 0; Gardens Point uses 2)")
    group.add_argument("--spacing", type=number(POSITIVE), default=None, metavar="M",
                       help="sequences: metres between frames (default 25/(K+1))")
    group.add_argument("--skip-bad", action="store_true", help="skip (and count) bad images and entries")
    add_bag_args(parser.add_argument_group("ROS bags"))


def add_bag_args(group, every: bool = True, positions: bool = True) -> None:
    """The topics and keyframe options of a ROS bag (``every``: add ``--every``, which ``stream`` has already;
    ``positions``: the GNSS / odometry topics and ``--min-distance``)."""
    group.add_argument("--image-topic", default=None, metavar="TOPIC",
                       help="image topic (sensor_msgs/Image or CompressedImage; default: the bag's only one)")
    if positions:
        topics = group.add_mutually_exclusive_group()
        topics.add_argument("--gps-topic", default=None, metavar="TOPIC",
                            help="sensor_msgs/NavSatFix positions (lat/lon to UTM), interpolated to each image "
                                 "stamp")
        topics.add_argument("--odom-topic", default=None, metavar="TOPIC",
                            help="nav_msgs/Odometry or geometry_msgs/PoseStamped positions (metres in its frame)")
    if every:
        group.add_argument("--every", type=number(COUNT), default=None, metavar="N",
                           help="keyframes: one image in N (default: every image)")
    group.add_argument("--min-interval", type=number(POSITIVE), default=None, metavar="SECONDS",
                       help="keyframes: at least SECONDS apart (header stamps)")
    if positions:
        group.add_argument("--min-distance", type=number(POSITIVE), default=None, metavar="METRES",
                           help="keyframes: at least METRES apart along the interpolated positions")


BAG_KEYS = ("image_topic", "gps_topic", "odom_topic", "every", "min_interval", "min_distance")


def dataset_options(args: argparse.Namespace) -> dict:
    """The :func:`netvlad.data.open_dataset` keyword arguments the dataset flags give."""
    return dict(format=args.format, split=args.split, database=args.database, queries=args.queries,
                image_root=args.image_root, frame_tolerance=args.frame_tolerance, spacing=args.spacing,
                skip_bad=args.skip_bad, **{key: getattr(args, key, None) for key in BAG_KEYS})


def dataset_source(args: argparse.Namespace) -> Path:
    """DATASET, or the current folder when it is left out and ``--database``/``--queries`` name two bags."""
    if args.dataset is not None:
        return args.dataset
    from netvlad.data.bags.bag import is_bag

    if args.database and args.queries and is_bag(Path(args.database)) and is_bag(Path(args.queries)):
        return Path(".")
    from netvlad.errors import BadInputError

    raise BadInputError("DATASET missing: give the dataset folder or file (or two bags: --database RUN1.bag "
                        "--queries RUN2.bag)", hint="DATASET")


def check_pair(args: argparse.Namespace) -> None:
    """Refuse ``--database`` without ``--queries`` (or the reverse): the same one-line error in every command."""
    database, queries = getattr(args, "database", None), getattr(args, "queries", None)
    if (database is None) != (queries is None):
        given, missing = ("--database", "--queries") if database is not None else ("--queries", "--database")
        from netvlad.errors import BadInputError

        raise BadInputError(f"{given} {database or queries} without {missing}: name both sub-folders (the "
                            "database and the queries, e.g. --database day_left --queries day_right)")


def dataset_from_args(args: argparse.Namespace):
    """Open the dataset the arguments describe (a :class:`netvlad.data.GeoDataset`)."""
    from netvlad.data import open_dataset


    check_pair(args)
    return open_dataset(dataset_source(args), **dataset_options(args))
