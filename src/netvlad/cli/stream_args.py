"""The options of ``netvlad stream`` (source sampling, map or loop closure, decisions, outputs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from netvlad.cli.common import existing, number, output
from netvlad.cli.dataset_args import add_bag_args
from netvlad.limits import COUNT, NEIGHBOURS, NON_NEGATIVE, POSITIVE, Limit
from netvlad.match.sequence import LENGTH
from netvlad.places.streaming import DATABASE_KINDS, DEFAULT_STREAM_SCORE, SEQUENCE_SCORES


def add_stream_args(parser: argparse.ArgumentParser) -> None:
    """SOURCE and the stream options."""
    parser.add_argument("source", type=existing("path", "video or folder of frames"), metavar="SOURCE",
                        help="a video file (decoded with PyAV), a folder of frames (name or timestamp order, or "
                             "its frames.csv), or a ROS bag (.bag, .mcap, ROS 2 folder; header-stamp order)")
    group = parser.add_argument_group("frames")
    group.add_argument("--every", type=number(COUNT), default=1, metavar="N", help="keep one frame in N")
    add_bag_args(parser.add_argument_group("ROS bags"), every=False)
    group.add_argument("--fps", type=number(POSITIVE), default=None,
                       help="frames per second where the frames carry no timestamps (else: frame counts)")
    group = parser.add_argument_group("matching")
    group.add_argument("--map", type=existing("folder", "index folder"), default=None, metavar="INDEX_FOLDER",
                       help="localise against this `netvlad index build` folder (default: loop closures against "
                            "the stream's own earlier frames)")
    group.add_argument("--exclude-recent", type=number(NON_NEGATIVE), default=30.0, metavar="SECONDS",
                       help="loop closures: leave out the frames of the last SECONDS (frames without timestamps)")
    group.add_argument("-k", type=number(NEIGHBOURS), default=5, help="matches searched per frame")
    group.add_argument("--sequence", type=number(LENGTH), default=None, metavar="L",
                       help="decide on a causal sequence score of the last L frames")
    group.add_argument("--sequence-score", default=DEFAULT_STREAM_SCORE, choices=SEQUENCE_SCORES.names(),
                       help="; ".join(f"{n}: {SEQUENCE_SCORES.get(n)}" for n in SEQUENCE_SCORES.names())
                       + f" (default {DEFAULT_STREAM_SCORE}, as netvlad evaluate --sequence)")
    group.add_argument("--threshold", type=number(POSITIVE), default=None,
                       help="largest L2 distance accepted as a loop closure or localisation (with --sequence: the "
                            "largest mean squared trajectory distance, or with distance the mean trajectory "
                            "distance; with --sequence-score seqslam: the smallest score; default: loop closures "
                            "that are consistent, distinctive and geometrically verified, no threshold needed; "
                            "against --map, every match)")
    group.add_argument("--radius", type=number(POSITIVE), default=25.0,
                       help="metres within which a match is correct, where frames carry positions (PR metrics)")
    group.add_argument("--index-type", dest="index_kind", default="flat", choices=DATABASE_KINDS.names(),
                       help="the growing database's search: exact, or IVF-PQ trained once it holds --min-train")
    group.add_argument("--min-train", type=number(Limit(16, None, integer=True)), default=1000,
                       help="IVF-PQ: frames before its first training")
    group = parser.add_argument_group("outputs")
    group.add_argument("--out", type=output(), default=None, metavar="FILE",
                       help="JSON lines here instead of standard output; with a bag SOURCE, FILE.bag / FILE.mcap "
                            "instead gets the loop closures as netvlad_msgs/LoopClosure messages (JSON lines stay "
                            "on standard output)")
    group.add_argument("--save", type=output("folder"), default=None, metavar="DB_FOLDER",
                       help="save the database of the stream's frames here (netvlad.PlaceDatabase.load reads it)")
    group.add_argument("--summary", type=output(), default=None, metavar="FILE",
                       help="also write the summary as JSON here")
    group.add_argument("--pr-plot", type=output(), default=None, metavar="PNG",
                       help="where frames carry positions: write the precision–recall curve here")
    group.add_argument("--cluster-images", type=number(COUNT), default=200,
                       help="off-the-shelf NetVLAD without --map: frames sampled for k-means")


def stream_config_from_args(args: argparse.Namespace):
    """The :class:`netvlad.places.stream.StreamConfig` of the command line."""
    from netvlad.places.database import DatabaseConfig
    from netvlad.places.stream import StreamConfig
    from netvlad.search.index import IndexConfig

    database = DatabaseConfig(IndexConfig(kind=args.index_kind), min_train=args.min_train)
    return StreamConfig(k=args.k, exclude_recent=args.exclude_recent, threshold=args.threshold,
                        sequence=args.sequence, sequence_score=args.sequence_score, radius=args.radius,
                        database=database)


def out_path(args: argparse.Namespace) -> Path | None:
    """Where the JSON lines go (None: standard output, also when ``--out`` names a bag of loop closures)."""
    return None if closures_path(args) is not None else args.out


def closures_path(args: argparse.Namespace) -> Path | None:
    """The bag (``--out FILE.bag`` or ``FILE.mcap``) the loop closures are written to, or None."""
    from netvlad.data.bags.bag import BAG_SUFFIXES

    return args.out if args.out is not None and args.out.suffix.lower() in BAG_SUFFIXES else None


def frame_source(args: argparse.Namespace):
    """The frames of SOURCE: a :class:`netvlad.data.frames.FrameSource` (video or folder) or, for a bag,
    :class:`netvlad.data.bags.frames.BagFrames`; bag options with another source, and ``--fps`` or a closures bag
    without a bag source, are refused."""
    from netvlad.data.bags.bag import is_bag
    from netvlad.errors import BadInputError

    bag_flags = [f"--{key.replace('_', '-')}" for key in ("image_topic", "gps_topic", "odom_topic", "min_interval",
                                                          "min_distance") if getattr(args, key) is not None]
    if not is_bag(args.source):
        from netvlad.data.frames import FrameSource

        if bag_flags or closures_path(args) is not None:
            flags = ", ".join(bag_flags + (["--out " + str(args.out)] if closures_path(args) else []))
            raise BadInputError(f"{args.source}: {flags} apply to ROS bag sources only", hint=f"drop {flags}")
        return FrameSource(args.source, every=args.every, fps=args.fps)
    from netvlad.data.bags.frames import BagFrames
    from netvlad.data.bags.keyframes import KeyframeRule
    from netvlad.data.bags.run import BagOptions

    if args.fps is not None:
        raise BadInputError(f"{args.source}: --fps does not apply to a bag (its frames carry header stamps)",
                            hint="drop --fps")
    rule = KeyframeRule(args.every, args.min_interval, args.min_distance)
    return BagFrames(args.source, BagOptions(args.image_topic, args.gps_topic, args.odom_topic, rule,
                                             need_positions=False))
