"""`netvlad stream SOURCE`: loop closures (or localisation against a map) frame by frame, one JSON line each."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from netvlad.cli.options import (
    add_bag_args,
    add_cluster_cache_arg,
    add_device_args,
    add_engine_arg,
    add_model_args,
    add_search_args,
    existing,
    index_config_from_args,
    max_memory_from_args,
    number,
    output,
)
from netvlad.limits import COUNT, NEIGHBOURS, NON_NEGATIVE, POSITIVE, Limit
from netvlad.match.sequence import DEFAULT_STREAM_SCORE, LENGTH, STREAM_SCORES, signed_stream_scores
from netvlad.places.database_config import DATABASE_KINDS

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 100  # frames between progress lines on standard error


def _model_and_map(args: argparse.Namespace, device):
    """(model, PlaceIndex or None): the map's own model unless ``--model`` (refused if it is another)."""
    from netvlad.cli.options import model_from_args, refuse_model_with_index
    from netvlad.places.localise import PlaceIndex

    if args.map is None:
        return model_from_args(args), None
    refuse_model_with_index(args, "map")
    place = PlaceIndex.load(args.map, index_config_from_args(args, device), max_memory_from_args(args))
    if args.model:
        model = model_from_args(args)
        place.check_model(model)
        return model, place
    return place.model, place


def _check_exclusion(source, args: argparse.Namespace) -> None:
    """Refuse ``--exclude-recent`` at least as long as the whole stream (no loop closure could be searched)."""
    if args.map is not None:
        return
    duration = source.duration()
    if duration is not None and args.exclude_recent >= duration:
        from netvlad.errors import BadInputError

        raise BadInputError(f"--exclude-recent {args.exclude_recent:g} is not shorter than the stream "
                            f"{source.path} ({duration:g} s or frames): no earlier frame could ever be matched; "
                            "use a shorter window")


def run(args: argparse.Namespace) -> int:
    """Stream SOURCE: a JSON line per frame, a summary on standard error, the database kept with ``--save``."""
    from netvlad.cli.options import cluster_cache, engine_from_args, pick_device
    from netvlad.data.frames import StreamEndedEarly
    from netvlad.files import refuse_overlaps
    from netvlad.places.stream import StreamMatcher, cluster_on_frames

    refuse_overlaps({"--out": args.out, "--summary": args.summary, "--pr-plot": args.pr_plot, "--save": args.save},
                    {"SOURCE": args.source, "--map": args.map, "--model": args.model})
    if args.resume is not None and args.map is not None:
        from netvlad.errors import BadInputError

        raise BadInputError("--resume continues a stream of loop closures; it cannot apply with --map: drop one")
    config = stream_config_from_args(args)  # its settings checked before any frame is read
    source = frame_source(args)
    stamps = getattr(source, "stamps", None)  # a bag's header stamps (ns) by frame name
    _check_exclusion(source, args)
    device = pick_device(args.device)
    model, place = _model_and_map(args, device)
    pre = model.config.preprocessing  # frames decoded as every other command decodes a file for this model
    source = source.decoded_as(pre.resize, pre.size, pre.fast_decode)
    if place is None:
        cluster_on_frames(model, source, args.cluster_images, device, not args.no_progress, args.batch_size,
                          args.workers, cache=cluster_cache(args))
    # after clustering (an export holds the final weights); auto keeps torch for a short stream, as for few images,
    # and for the default loop-closure decision, whose local features come from torch's own pass (onnxruntime would
    # run the backbone's early stages twice: 36.6 ms a frame against torch's 30.0 on Gardens Point at 320 px)
    decides = place is None and args.threshold is None
    runner = engine_from_args(args, model, device, images=1 if decides else (len(source) or None))
    resumed = None
    if args.resume is not None:
        from netvlad.places.database import PlaceDatabase

        resumed = PlaceDatabase.load(args.resume)
    matcher = StreamMatcher(model, config, place, device, fingerprint=model.fingerprint(),
                            runner=runner, database=resumed)
    ended = None
    lines = out_path(args)
    with (open(lines, "w", encoding="utf-8") if lines else contextlib.nullcontext(sys.stdout)) as out:
        try:
            for count, result in enumerate(matcher.run(source), 1):
                line = result.to_dict()
                if stamps is not None:
                    line |= {"stamp_ns": stamps[result.name], "match_stamp_ns": stamps.get(result.match)}
                out.write(json.dumps(line) + "\n")
                out.flush()
                if count % PROGRESS_EVERY == 0 and not args.no_progress:
                    logger.info("%d frames, %d loop closures", count, sum(r.loop_closure for r in matcher.results))
        except StreamEndedEarly as error:
            ended = error
    summary = matcher.summary() | {"source": str(args.source), "mode": "map" if place else "loop closure",
                                   "engine": runner.name}
    print(format_summary(summary), file=sys.stderr)
    if args.summary:
        from netvlad.files import atomic_write

        atomic_write(args.summary, lambda tmp: tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8"))
    if args.pr_plot and matcher.pr() is not None:
        from netvlad.eval.pr_plot import plot_pr

        label = f"{'sequence L=' + str(args.sequence) if args.sequence else 'single frame'}"
        plot_pr({label: matcher.pr()}, args.pr_plot, title=Path(args.source).name)
    if closures_path(args) is not None:
        _write_closures(closures_path(args), matcher.results, source)
    if args.save:
        matcher.database.save(args.save)
        print(f"saved the database of {len(matcher.database)} frames to {args.save}", file=sys.stderr)
    if ended is not None:
        raise ended  # one ERROR line naming the file and the frame; the results above are kept
    if place is None and matcher.results and not matcher.searched:
        from netvlad.errors import BadInputError

        raise BadInputError(f"--exclude-recent {args.exclude_recent:g} covered the whole stream: no frame had an "
                            "earlier one to match; use a shorter window")
    return 0


def _write_closures(path: Path, results, source) -> None:
    """The accepted loop closures between the bag's keyframes as ``netvlad_msgs/LoopClosure`` messages."""
    from netvlad.data.bags.closures import Closure, write_closures

    closures = [Closure(source.stamps[r.name], source.stamps[r.match], r.distance, r.name, r.match)
                for r in results if r.loop_closure and r.match in source.stamps]
    write_closures(path, closures, source.run.topic)
    print(f"wrote {len(closures)} loop closures to {path} (topic /netvlad/loop_closure)", file=sys.stderr)


def format_summary(summary: dict) -> str:
    """The summary lines printed on standard error."""
    latency = summary["latency_ms"]
    lines = [f"{summary['frames']} frames ({summary['mode']}), {summary['loop_closures']} accepted matches; "
             f"latency p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms (describe + search + sequence + "
             f"checks; the checks alone p99 {summary['check_ms']['p99']:.1f} ms)"]
    decision = summary.get("decision")
    if decision is not None:
        precision = "—" if decision["precision"] is None else f"{decision['precision']:.1f} %"
        recall = "—" if decision["recall"] is None else f"{decision['recall']:.1f} %"
        lines.append(f"decision: {decision['accepted']} accepted, {decision['false']} false; precision {precision}, "
                     f"recall {recall}")
    if "unscored" in summary:
        lines.append(summary["unscored"])
    if "pr_auc" in summary:
        threshold = summary["threshold_at_100_precision"]
        lines.append(f"{summary['pr_ranking']}: PR AUC {summary['pr_auc']:.3f}, recall at 100 % precision "
                     f"{summary['recall_at_100_precision']:.1f} % (threshold {threshold}), at 99 % "
                     f"{summary['recall_at_99_precision']:.1f} %")
    return "\n".join(lines)


def register(subparsers) -> None:
    """Add ``netvlad stream``."""
    parser = subparsers.add_parser("stream", help="loop closures or localisation over a video, frame folder or ROS bag",
                                   description="Describe each frame of SOURCE, search it against the stream's "
                                               "own earlier frames (loop closures) or a prebuilt map (--map), "
                                               "and write one JSON line per frame.")
    add_stream_args(parser)
    add_model_args(parser)
    add_device_args(parser)
    add_engine_arg(parser)
    add_search_args(parser.add_argument_group("map search"))
    parser.set_defaults(func=run)


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
    group.add_argument("--sequence-score", default=DEFAULT_STREAM_SCORE, choices=STREAM_SCORES.names(),
                       help=STREAM_SCORES.describe()
                       + f" (default {DEFAULT_STREAM_SCORE}, as netvlad evaluate --sequence)")
    signed = signed_stream_scores()  # a threshold on them may be below 0: the parser takes any number for them
    higher = [name for name in STREAM_SCORES.names() if STREAM_SCORES.get(name).higher_is_better]
    group.add_argument("--threshold", type=number(Limit() if signed else POSITIVE), default=None,
                       help="largest L2 distance (> 0) accepted as a loop closure or localisation (with --sequence: "
                            f"the largest score of --sequence-score, the smallest for {' or '.join(higher)}, below 0 "
                            f"only for {' or '.join(signed)}; default: loop closures that are consistent, distinctive "
                            "and geometrically verified, no threshold needed; against --map, every match)")
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
                       help="save the database of the stream's frames here, with their local features "
                            "(netvlad.PlaceDatabase.load reads it)")
    group.add_argument("--resume", type=existing("folder", "place database folder"), default=None,
                       metavar="DB_FOLDER", help="loop closures: continue the stream saved here with --save (its "
                                                 "frames searched and verified as if it had not stopped)")
    group.add_argument("--summary", type=output(), default=None, metavar="FILE",
                       help="also write the summary as JSON here")
    group.add_argument("--pr-plot", type=output(), default=None, metavar="PNG",
                       help="where frames carry positions: write the precision–recall curve here")
    group.add_argument("--cluster-images", type=number(COUNT), default=200,
                       help="off-the-shelf NetVLAD without --map: frames sampled for k-means")
    add_cluster_cache_arg(group)


def stream_config_from_args(args: argparse.Namespace):
    """The :class:`netvlad.places.stream.StreamConfig` of the command line."""
    from netvlad.places.database_config import DatabaseConfig
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
