"""How a CPU batch should be cut: milliseconds per image against images per torch call, across models, sizes and
thread counts, measured side by side in one run; the data behind ``netvlad.extract.engine.TORCH_CPU_IMAGES``.

Three ways to run the same model (``netvlad.extract.engine.TorchRunner``) on the same random images:

- ``nchw``: the model as built (contiguous NCHW, batch norms separate, eager), one image per call: the reference;
- ``eager``: eval batch norms folded into the convolutions, channels_last, eager;
- ``traced``: the same copy traced and frozen by TorchScript, compiled by oneDNN Graph (the engine's CPU default);

``eager`` and ``traced`` run ``--images`` images in chunks of each of ``--chunks`` images per call. Every variant
and chunk runs in every round, their order rotating from round to round; each cell is the median over
``--repeats`` rounds of the process's CPU milliseconds per image (at one thread the calling thread's own time,
which a busy machine does not inflate; at more, every thread's, with OpenMP's idle threads sleeping instead of
spinning: ``OMP_WAIT_POLICY=PASSIVE``, set by ``python -m benchmarks`` for this benchmark, since spinning threads
on a shared machine bill their wait as work). ``÷ nchw`` is the speed-up over the reference (> 1 is faster);
``load`` the machine's 1-minute load average when the row finished. A model given as
``backbone:pool:height:images`` times that many images a round instead of ``--images`` (a chunk larger than the
round is not run: a large model at a large size stays bounded). MobileNetV2 has its ImageNet weights (offline),
the others random weights (the cost does not depend on the values).

    python -m benchmarks cpu-chunk [--models mobilenet_v2:gem:240 vgg16:netvlad:480:8 …] [--threads 1 2]
                                   [--chunks 1 2 4 8] [--images 8] [--repeats 3] [--results docs/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from benchmarks.common import add_results_option
from benchmarks.engine import build
from netvlad.extract.engine import TorchRunner

DEFAULT_MODELS = ["mobilenet_v2:gem:240", "mobilenet_v2:gem:480", "resnet50_layer3:netvlad:120",
                  "vgg16:netvlad:120"]
VARIANTS = {"nchw": {"fold": False, "channels_last": False, "trace": False},
            "eager": {"trace": False},
            "traced": {}}


def per_image_ms(run, images: torch.Tensor) -> float:
    """CPU milliseconds per image of ``run`` over ``images`` (the process's CPU time: at one thread the calling
    thread's, at more every intra-op thread's)."""
    clock = time.thread_time if torch.get_num_threads() == 1 else time.process_time
    start = clock()
    run(images)
    return (clock() - start) / len(images) * 1e3


def measure(spec: str, threads: int, chunks: list[int], count: int, repeats: int) -> dict:
    """One model (``backbone:pool:height[:images]``, width 4/3 of it) at ``threads`` torch threads: ms per image
    per chunk."""
    backbone, pool, height, *images_per_round = spec.split(":")
    height, count = int(height), int(images_per_round[0]) if images_per_round else count
    width = height * 4 // 3
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(backbone, pool, height, width)
    images = torch.rand(count, 3, height, width, generator=torch.Generator().manual_seed(0))
    cells = [("nchw", 1)] + [(name, chunk) for name in ("eager", "traced") for chunk in chunks if chunk <= count]
    runners = {cell: TorchRunner(model, torch.device("cpu"), chunk=cell[1], **VARIANTS[cell[0]]) for cell in cells}
    for cell, run in runners.items():  # warm-up on one chunk: the folded copy made, the chunk's shape traced
        run(images[:cell[1]])
    times: dict[tuple[str, int], list[float]] = {cell: [] for cell in cells}
    outputs = {}
    for round_ in range(repeats):
        for cell in cells[round_ % len(cells):] + cells[:round_ % len(cells)]:
            times[cell].append(per_image_ms(lambda batch, cell=cell: outputs.__setitem__(cell, runners[cell](batch)),
                                            images))
    ms = {f"{name}:{chunk}": statistics.median(times[name, chunk]) for name, chunk in cells}
    row = {"model": f"{backbone} + {pool}", "size": f"{height}×{width}", "threads": threads,
           "ms": {key: round(value, 2) for key, value in ms.items()}, "images": count,
           "max_abs_difference": max(float(np.abs(out - outputs["nchw", 1]).max()) for out in outputs.values()),
           "load": round(os.getloadavg()[0], 1)}
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict], chunks: list[int]) -> str:
    """The Markdown table: per model, size and thread count, ms per image by chunk, and each speed-up over nchw."""
    head = ("| model | input | threads | images a round | nchw, 1 a call (ms/image) | "
            + " | ".join(f"{name} {chunk} a call" for name in ("eager", "traced") for chunk in chunks)
            + " | max abs Δ | load |")
    lines = [head, "|---|---|---:|---:|---:|" + "---:|" * (2 * len(chunks)) + "---:|---:|"]
    for row in rows:
        base = row["ms"]["nchw:1"]
        cells = [f"{row['ms'][key]} ({base / row['ms'][key]:.2f}×)" if key in row["ms"] else "–"
                 for key in (f"{name}:{chunk}" for name in ("eager", "traced") for chunk in chunks)]
        lines.append(f"| {row['model']} | {row['size']} | {row['threads']} | {row['images']} | {base} | "
                     + " | ".join(cells) + f" | {row['max_abs_difference']:.1e} | {row['load']} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                        help="backbone:pool:height[:images a round] (width 4/3 of it)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads, a row each")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4, 8], help="images per call compared")
    parser.add_argument("--images", type=int, default=8, help="images per timed round")
    parser.add_argument("--repeats", type=int, default=3)
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Every model at every thread count; returns the Markdown table."""
    rows = [measure(spec, threads, args.chunks, args.images, args.repeats)
            for spec in args.models for threads in args.threads]
    return ("CPU milliseconds per image (speed-up over nchw), random images seeded 0, median of "
            f"{args.repeats} rounds, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}:"
            "\n\n" + table(rows, args.chunks))
