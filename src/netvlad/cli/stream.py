"""`netvlad stream SOURCE`: loop closures (or localisation against a map) frame by frame, one JSON line each."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
from pathlib import Path

from netvlad.cli.common import add_device_args, add_model_args
from netvlad.cli.engine_args import add_engine_arg
from netvlad.cli.search_args import add_search_args, index_config_from_args, max_memory_from_args
from netvlad.cli.stream_args import add_stream_args, stream_config_from_args

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 100  # frames between progress lines on standard error


def _model_and_map(args: argparse.Namespace, device):
    """(model, PlaceIndex or None): the map's own model unless ``--model`` (refused if it is another)."""
    from netvlad.cli.common import model_from_args
    from netvlad.cli.ignored_args import refuse_model_with_index
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


def _cluster_on_frames(model, source, args: argparse.Namespace, device) -> None:
    """An off-the-shelf NetVLAD without a map: k-means centroids from frames sampled along the stream."""
    from netvlad.cli.extract_args import cluster_from_args
    from netvlad.nn import NetVLAD

    if args.model is not None or not isinstance(model.pool, NetVLAD):
        return
    with tempfile.TemporaryDirectory(prefix="netvlad-stream-") as folder:
        paths = []
        step = max(1, len(source) // args.cluster_images) if len(source) else 1
        for i, frame in enumerate(source):
            if i % step == 0 and len(paths) < args.cluster_images:
                paths.append(Path(folder) / f"{len(paths):05d}.png")
                frame.image.save(paths[-1])
        cluster_from_args(model, paths, args, device)


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
    from netvlad.cli.common import pick_device
    from netvlad.cli.engine_args import engine_from_args
    from netvlad.cli.stream_args import closures_path, frame_source, out_path
    from netvlad.data.frames import StreamEndedEarly
    from netvlad.files import refuse_overlaps
    from netvlad.places.stream import StreamMatcher

    refuse_overlaps({"--out": args.out, "--summary": args.summary, "--pr-plot": args.pr_plot, "--save": args.save},
                    {"SOURCE": args.source, "--map": args.map, "--model": args.model})
    source = frame_source(args)
    stamps = getattr(source, "stamps", None)  # a bag's header stamps (ns) by frame name
    _check_exclusion(source, args)
    device = pick_device(args.device)
    model, place = _model_and_map(args, device)
    pre = model.config.preprocessing  # frames decoded as every other command decodes a file for this model
    source = source.decoded_as(pre.resize, pre.size, pre.fast_decode)
    if place is None:
        _cluster_on_frames(model, source, args, device)
    # after clustering (an export holds the final weights); auto keeps torch for a short stream, as for few images,
    # and for the default loop-closure decision, whose local features come from torch's own pass (onnxruntime would
    # run the backbone's early stages twice: 36.6 ms a frame against torch's 30.0 on Gardens Point at 320 px)
    decides = place is None and args.threshold is None
    runner = engine_from_args(args, model, device, images=1 if decides else (len(source) or None))
    matcher = StreamMatcher(model, stream_config_from_args(args), place, device, fingerprint=model.fingerprint(),
                            runner=runner)
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
