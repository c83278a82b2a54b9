"""onnxruntime end to end against its bare model: what decoding and resizing add per image, with and without the
extraction loop's prefetch thread, measured side by side in one run on real photographs.

For each thread count and batch size, three ways through the same onnxruntime session and the same Gardens Point
frames (``--images`` of day_left, resized to the model's fixed size):

- ``bare``: the session on images already decoded, resized and stacked (the model's own time);
- ``sequential``: ``extract_descriptors(..., prefetch=0)``: decode, resize, then run, one batch after the other;
- ``prefetch``: ``extract_descriptors(...)`` with ``EngineConfig(lanes=1)``: a thread decodes the next batches
  while the model runs this one, one image at a time on every onnxruntime thread;
- ``uint8``: as ``prefetch`` with ``EngineConfig(uint8=True)``: the thread hands over the decoded bytes and the
  graph converts them (its own export);
- ``lanes``: ``extract_descriptors(...)`` as the library runs it (``EngineConfig(lanes=threads)``, its default):
  as many threads as onnxruntime threads each decode an image and run it through a one-thread session (the cores
  shared by images, not by one image's loops; the same as ``prefetch`` at one thread);
- ``lanes + uint8``: both.

Each cell is the median over ``--repeats`` rounds (variants in rotating order) of wall milliseconds per image
(overlap only shows in wall time); ``÷ bare`` is end to end over bare (the target is ≤ 1.3). Sequential and
prefetch give the same descriptors bit for bit; the caption gives the options' largest difference to them.

    python -m benchmarks onnx-overlap [--threads 1 2] [--batch-sizes 1 8] [--images 16] [--repeats 3]
                                      [--results docs/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import SHARED_DATA, add_results_option
from benchmarks.engine import build
from netvlad.data.images import load_image
from netvlad.extract.descriptors import extract_descriptors
from netvlad.extract.engine import EngineConfig, make_runner

SIZE = (240, 320)
OPTIONS = ("uint8", "lanes", "lanes + uint8")  # EngineConfig options measured beside one image at a time


def wall_ms(work, count: int) -> float:
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) / count * 1e3


def measure(paths: list[Path], threads: int, batch: int, repeats: int, cache: Path) -> dict:
    """One thread count and batch size: ms per image of bare, sequential and prefetch."""
    torch.set_num_threads(threads)
    model = build("mobilenet_v2", "gem", *SIZE)
    run = make_runner(model, EngineConfig("onnxruntime", threads=threads, cache=cache, lanes=1))
    bytes_in = make_runner(model, EngineConfig("onnxruntime", threads=threads, cache=cache, uint8=True, lanes=1))
    side_by_side = make_runner(model, EngineConfig("onnxruntime", threads=threads, cache=cache, lanes=threads))
    both = make_runner(model, EngineConfig("onnxruntime", threads=threads, cache=cache, uint8=True, lanes=threads))
    images = torch.stack([load_image(path, "fixed", SIZE) for path in paths])
    variants = {
        "bare": lambda: [run(images[i:i + batch]) for i in range(0, len(images), batch)],
        "sequential": lambda: extract_descriptors(model, paths, batch_size=batch, engine=run, prefetch=0),
        "prefetch": lambda: extract_descriptors(model, paths, batch_size=batch, engine=run),
        "uint8": lambda: extract_descriptors(model, paths, batch_size=batch, engine=bytes_in),
        "lanes": lambda: extract_descriptors(model, paths, batch_size=batch, engine=side_by_side),
        "lanes + uint8": lambda: extract_descriptors(model, paths, batch_size=batch, engine=both),
    }
    prefetched = variants["prefetch"]()  # and the warm-up
    same = np.array_equal(variants["sequential"](), prefetched)
    difference = {name: float(np.abs(variants[name]() - prefetched).max()) for name in OPTIONS}
    variants["bare"]()
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        turn = round_ % len(names)
        for name in names[turn:] + names[:turn]:
            times[name].append(wall_ms(variants[name], len(paths)))
    ms = {name: round(statistics.median(values), 2) for name, values in times.items()}
    row = {"threads": threads, "batch": batch, "ms": ms, "same_descriptors": bool(same), "max_difference": difference}
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict]) -> str:
    ends = ("sequential", "prefetch", *OPTIONS)
    lines = ["| threads | batch | bare (ms/image) | " + " | ".join(ends) + " | "
             + " | ".join(f"{name} ÷ bare" for name in ends) + " |",
             "|" + "---:|" * (3 + 2 * len(ends))]
    for row in rows:
        ms = row["ms"]
        lines.append(f"| {row['threads']} | {row['batch']} | {ms['bare']} | " + " | ".join(str(ms[n]) for n in ends)
                     + " | " + " | ".join(f"**{ms[n] / ms['bare']:.2f}**" if n != "sequential"
                                         else f"{ms[n] / ms['bare']:.2f}" for n in ends) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder (Gardens Point)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="onnxruntime and torch threads")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Every thread count and batch size; returns the Markdown table."""
    paths = sorted((args.data / "gardens_point" / "day_left").glob("*.jpg"))[:args.images]
    with tempfile.TemporaryDirectory() as cache:
        rows = [measure(paths, threads, batch, args.repeats, Path(cache))
                for threads in args.threads for batch in args.batch_sizes]
    largest = max(max(row["max_difference"].values()) for row in rows)
    return (f"MobileNetV2 + GeM at {SIZE[0]}×{SIZE[1]} through onnxruntime, {len(paths)} Gardens Point frames, wall "
            f"milliseconds per image, median of {args.repeats} rounds (uint8: the decoded bytes into the graph; "
            f"lanes, the library's default: one image per thread, each on one onnxruntime thread; their descriptors "
            f"differ from prefetch's by "
            f"at most {largest:.1g}):\n\n" + table(rows))
