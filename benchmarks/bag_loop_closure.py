"""Loop closures from a ROS bag: Gardens Point day_left then day_right recorded as one bag, streamed back.

Writes a bag (``.bag``, ``.mcap`` or a ROS 2 SQLite folder) holding the 400 frames as ``sensor_msgs/CompressedImage``
(the JPEG bytes) on ``/camera/image/compressed``, one frame a second, and ``sensor_msgs/NavSatFix`` fixes at 1 Hz
along a made-up route near Gardens Point: an S-shaped walk of 2 m per place, the second traverse 3 m beside the
first (the other side of the path), starting as the first ends. Images are stamped 0.25 s after each fix, so every
position is interpolated. Then runs ``netvlad stream BAG`` (the command itself) with the closures written back to
``closures.mcap``, and draws the route with the accepted loop closures and every keyframe's matched stamp against
its own. A revisit is correct within ``--radius`` metres (5.5 m: ±2 places, 5 m away across the path).

    python -m benchmarks bag-loop-closure [--bag-format mcap] [--size 320] [--sequence 10] [--threads 1]
                                          [--png docs/images/bag_loop_closure.png] [--work /tmp/bag-loop]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from benchmarks.common import REPO, SHARED_DATA, add_results_option, work_dir

PLACES = 200
SPACING = 2.0  # metres between places
OFFSET = 3.0  # metres between the two traverses
SECOND = 201  # seconds: the second traverse starts (the last fix of the first is at 200 s)
ORIGIN = (502964.0, 6961505.0, 56, "J")  # UTM of Gardens Point, Brisbane
IMAGE_DELAY_NS = 250_000_000
T0 = 1_700_000_000 * 1_000_000_000


def route(place: float, side: int) -> tuple[float, float]:
    """Metres east, north of the origin of ``place`` on traverse ``side`` (0 or 1): an S-shaped walk."""
    s = place * SPACING
    x, y = 60.0 * math.sin(2 * math.pi * s / (PLACES * SPACING)), 0.7 * s
    dx, dy = 60.0 * 2 * math.pi / (PLACES * SPACING) * math.cos(2 * math.pi * s / (PLACES * SPACING)), 0.7
    norm = math.hypot(dx, dy)
    return x + side * OFFSET * dy / norm, y - side * OFFSET * dx / norm


def write_bag(path: Path, data: Path) -> None:
    """The two traverses as one bag (see the module docstring)."""
    import numpy as np
    import utm

    from netvlad.data.bags.writer import BagWriter, header

    with BagWriter(path) as bag:
        types, ts = bag.typestore.types, bag.typestore
        bag.topic("/camera/image/compressed", "sensor_msgs/msg/CompressedImage")
        bag.topic("/gps/fix", "sensor_msgs/msg/NavSatFix")
        status = types["sensor_msgs/msg/NavSatStatus"](status=0, service=1)
        for side, folder, start in ((0, "day_left", 0), (1, "day_right", SECOND)):
            for place in range(PLACES + 1):  # one fix past the last image
                stamp = T0 + (start + place) * 1_000_000_000
                east, north = route(place, side)
                lat, lon = utm.to_latlon(ORIGIN[0] + east, ORIGIN[1] + north, ORIGIN[2], ORIGIN[3])
                bag.write("/gps/fix", stamp, types["sensor_msgs/msg/NavSatFix"](
                    header=header(ts, stamp, "gps"), status=status, latitude=float(lat), longitude=float(lon),
                    altitude=20.0, position_covariance=np.zeros(9), position_covariance_type=0))
                if place < PLACES:
                    jpeg = np.frombuffer((data / folder / f"Image{place:03d}.jpg").read_bytes(), np.uint8)
                    bag.write("/camera/image/compressed", stamp + IMAGE_DELAY_NS,
                              types["sensor_msgs/msg/CompressedImage"](
                                  header=header(ts, stamp + IMAGE_DELAY_NS, "camera"), format="jpeg", data=jpeg))


def plot(lines: list[dict], summary: dict, png: Path, radius: float, title: str) -> None:
    """Left: the route from the GNSS fixes, each closure the stream accepted joined to its match (green: the match
    lies within ``radius``, red: not); right: every keyframe's top match, its stamp against the keyframe's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.2), gridspec_kw={"width_ratios": [1, 1.3]})
    for side, colour in ((0, "0.6"), (1, "tab:blue")):
        track = np.array([route(p, side) for p in range(PLACES)])
        left.plot(track[:, 0], track[:, 1], color=colour, lw=1, label=f"walk {side + 1}")
    start = T0 / 1e9
    for line in lines:
        if line["match"] is None or line["position"] is None:
            continue
        here, there = np.asarray(line["here"]), np.asarray(line["position"])
        colour = "tab:green" if float(np.hypot(*(here - there))) <= radius else "tab:red"
        right.scatter(line["stamp_ns"] / 1e9 - start, line["match_stamp_ns"] / 1e9 - start, s=7, color=colour,
                      alpha=1.0 if line["loop_closure"] else 0.25)
        if line["loop_closure"]:
            left.plot([here[0], there[0]], [here[1], there[1]], color=colour, lw=1.5)
            left.scatter([here[0]], [here[1]], s=9, color=colour, zorder=3)
    decision = summary["decision"]
    left.set_aspect("equal")
    left.set_xlabel("east (m)")
    left.set_ylabel("north (m)")
    left.legend(loc="lower right", fontsize=8)
    left.set_title(f"{decision['accepted']} loop closures accepted,\n{decision['false']} false", fontsize=10)
    right.set_xlabel("keyframe stamp (s from the bag's start)")
    right.set_ylabel("matched earlier keyframe's stamp (s)")
    right.set_title(f"top match of every keyframe (solid: accepted): green within {radius:g} m, red not\n"
                    f"PR AUC {summary['pr_auc']:.3f}", fontsize=10)
    right.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--bag-format", choices=("bag", "mcap", "sqlite"), default="mcap")
    parser.add_argument("--size", type=int, default=320, help="longest image side, pixels")
    parser.add_argument("--sequence", type=int, default=10, help="causal sequence length L (0: single frame)")
    parser.add_argument("--exclude-recent", type=float, default=30.0, help="seconds")
    parser.add_argument("--radius", type=float, default=5.5, help="metres counted as the same place (±2 places)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "images" / "bag_loop_closure.png")
    parser.add_argument("--work", type=Path, default=work_dir("bag-loop-closure"))
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "gardens_point",
                        help="the Gardens Point folder (day_left, day_right)")
    add_results_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with the parsed options."""
    from netvlad.cli.main import main as netvlad
    from netvlad.numerics import cpu_isa, cpu_name

    data = args.data
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    bag = args.work / {"bag": "walk.bag", "mcap": "walk.mcap", "sqlite": "walk"}[args.bag_format]
    write_bag(bag, data)
    command = ["stream", str(bag), "--image-topic", "/camera/image/compressed", "--gps-topic", "/gps/fix",
               "--pool", "gem", "--resize", "longest", "--size", str(args.size), "--exclude-recent",
               str(args.exclude_recent), "--radius", str(args.radius), "--threads", str(args.threads),
               "--device", "cpu", "--no-progress", "--summary", str(args.work / "summary.json"),
               "--out", str(args.work / "closures.mcap")]
    if args.sequence:
        command += ["--sequence", str(args.sequence)]
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        if netvlad(command) != 0:
            return 1
    lines = [json.loads(line) for line in printed.getvalue().splitlines()]
    from netvlad.data.bags.run import BagOptions, read_run

    run = read_run(bag, BagOptions("/camera/image/compressed", "/gps/fix"))
    here = dict(zip(run.names, run.points.tolist(), strict=True))  # each keyframe's interpolated UTM position
    for line in lines:  # drawn in metres from the route's origin
        line["here"] = [here[line["name"]][0] - ORIGIN[0], here[line["name"]][1] - ORIGIN[1]]
        if line["position"] is not None:
            line["position"] = [line["position"][0] - ORIGIN[0], line["position"][1] - ORIGIN[1]]
    summary = json.loads((args.work / "summary.json").read_text())
    label = f"sequence L={args.sequence}" if args.sequence else "single frame"
    plot(lines, summary, args.png, args.radius, f"Gardens Point day_left → day_right as one bag ({bag.name}), "
                                                 f"MobileNetV2 + GeM, {label}")
    decision = summary["decision"]
    print("| bag | keyframes | matching | closures accepted | false | precision | recall | PR AUC | latency p50 ms |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    print(f"| {bag.name} | {summary['frames']} | {label} | {decision['accepted']} | {decision['false']} | "
          f"{decision['precision']:.1f} % | {decision['recall']:.1f} % | {summary['pr_auc']:.3f} | "
          f"{summary['latency_ms']['p50']:.0f} |")
    print(f"{cpu_name()} ({cpu_isa()}), {args.threads} thread(s), seedless (every step is deterministic)")
    print(f"wrote {args.png} and {args.work / 'closures.mcap'}")
    return 0
