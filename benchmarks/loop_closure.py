"""A loop-closure example on real frames: Gardens Point day_left then day_right as one walk, PR curves.

Lays the two traverses out as one stream (what ``netvlad data route`` writes), runs ``netvlad stream``'s matcher
over it single-frame and with causal sequences of L frames (the plain trajectory score over the whole map — the
stream's default —, the shortlist's raw trajectory distance, or SeqSLAM's contrast-normalised score), and writes
the precision–recall curves of the loop closures in one PNG plus a markdown table (PR AUC, recall at 100 % and 99 %
precision, the distance threshold at 100 % precision, per-frame latency). Ground truth: a revisit is correct within
±``--radius`` places (1 m spacing).

    python -m benchmarks loop-closure [--every 1] [--size 320] [--sequences 0 5 10 5:distance 10:distance 10:seqslam]
                                      [--engine auto]
                                      [--png docs/images/loop_closure_pr.png] [--work /tmp/loop-closure]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import REPO, SHARED_DATA, add_results_option, work_dir


def curves(args: argparse.Namespace) -> list[tuple[str, dict, object]]:
    """(label, summary, PR curve) per sequence length."""
    import torch

    from netvlad.data.frames import FrameSource
    from netvlad.data.route import RouteConfig, write_route
    from netvlad.extract.engine import make_runner
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing
    from netvlad.places.stream import StreamConfig, StreamMatcher

    torch.set_num_threads(args.threads)
    data = SHARED_DATA / "gardens_point"
    frames = args.work / "frames"
    if not (frames / "frames.csv").is_file():
        write_route(data / "day_left", data / "day_right", args.work, RouteConfig(every=args.every))
    config = ModelConfig(backbone="mobilenet_v2", pool="gem",
                         preprocessing=Preprocessing(resize="longest", size=(args.size,)))
    model = PlaceModel(config, pretrained=True).eval()
    runner = make_runner(model, args.engine)
    out = []
    for spec in args.sequences:
        length, _, score = spec.partition(":")
        length, score = int(length), score or StreamConfig().sequence_score
        stream = StreamConfig(exclude_recent=args.exclude_recent, radius=args.radius, sequence=length or None,
                              sequence_score=score)
        matcher = StreamMatcher(model, stream, runner=runner)
        for _ in matcher.run(FrameSource(frames)):
            pass
        label = f"sequence L={length} ({score})" if length else "single frame"
        out.append((label, matcher.summary() | {"engine": runner.name}, matcher.pr()))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--every", type=int, default=1, help="keep one place in N")
    parser.add_argument("--size", type=int, default=320, help="longest image side, pixels")
    parser.add_argument("--sequences", nargs="+", default=["0", "5", "10", "5:distance", "10:distance", "10:seqslam"],
                        help="L[:score] values (0: single frame; score diagonal (default), distance or seqslam)")
    parser.add_argument("--engine", default="auto", help="torch, onnxruntime or auto")
    parser.add_argument("--exclude-recent", type=float, default=30.0, help="seconds (1 frame per second)")
    parser.add_argument("--radius", type=float, default=2.0, help="metres (= places) counted as the same place")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "images" / "loop_closure_pr.png")
    parser.add_argument("--work", type=Path, default=work_dir("loop-closure"))
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options."""
    from netvlad.eval.pr_plot import plot_pr

    results = curves(args)
    plot_pr({label: curve for label, _, curve in results}, args.png,
            title="Gardens Point day_left → day_right, loop closures")
    lines = ["| matching | PR AUC | recall @ 100 % precision | recall @ 99 % precision | threshold @ 100 % | "
             "latency p50 / p99 ms |", "|---|---:|---:|---:|---:|---:|"]
    for label, summary, _ in results:
        latency = summary["latency_ms"]
        lines.append(f"| {label} | {summary['pr_auc']:.3f} | {summary['recall_at_100_precision']:.1f} % | "
              f"{summary['recall_at_99_precision']:.1f} % | {summary['threshold_at_100_precision']} | "
              f"{latency['p50']:.0f} / {latency['p99']:.0f} |")
    print(f"wrote {args.png}")
    return "\n".join(lines)
