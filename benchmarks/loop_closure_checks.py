"""Time the default loop-closure decision's checks per frame over a large map, on one thread (thread CPU time,
which the other processes of a loaded machine do not inflate).

A map of N descriptor-only 1280-D entries (``benchmarks/stream.py``'s random-walk route), each with the local
features of a 320 × 180 frame's stride-16 MobileNetV2 map (240 cells of 96 dims; one feature set shared by every
entry, which changes no cost), and ``--frames`` stream frames revisiting a stretch of it with noise. The search
is not timed (``benchmarks/stream.py`` times it); the checks are: the frame's distance distribution, the path's
consistency and distinctiveness, the runner-up ratio, and — for every frame, the worst case, since a permissive
rule sends every candidate on — the geometric verification and the frame's null (the runner-up place and the
random map frames, every one a full match here: RANSAC's most expensive case). Each size runs once per number
of cells kept a frame (the strongest), interleaved frame by frame (in turn first) so that all see the same load;
the memory column is the local features' bytes per map frame × N.

    python -m benchmarks loop-closure-checks [--sizes 1000 100000] [--frames 200] [--results DIR]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: the checks' small products on one thread

import argparse
import sys
import time

import numpy as np

from benchmarks.common import add_results_option

CELLS = (256, 128, 64)  # local features kept a frame, the strongest


def run_size(n: int, frames: int, length: int | None, seed: int = 0) -> dict:
    """Check times (ms of thread CPU time) of ``frames`` revisiting frames over an ``n``-entry map, for each number
    of cells kept a frame, interleaved; the features' bytes per frame."""
    import torch

    from benchmarks.stream import percentiles, route
    from netvlad.extract.local_features import select_cells
    from netvlad.places.loop_closure import LoopClosureConfig, LoopClosureDetector

    rng = np.random.default_rng(seed)
    entries = route(n, rng)
    revisit = int(rng.integers(0, max(1, n - frames)))
    queries = entries[revisit:revisit + frames] + 0.02 * rng.standard_normal((frames, entries.shape[1]),
                                                                              dtype=np.float32)
    # one scene for every frame: every cell a mutual match, so RANSAC runs on all 240 (its most expensive case)
    features = [select_cells(torch.from_numpy(rng.standard_normal((96, 12, 20), dtype=np.float32)))]
    rule = LoopClosureConfig(min_distinctiveness=float("-inf"), max_ratio=float("inf"), min_consistency=0.0)
    kinds = {f"{min(cells, len(features[0]))} cells": features[0].strongest(cells) for cells in CELLS}
    detectors = {kind: LoopClosureDetector(rule, length) for kind in kinds}
    for kind, detector in detectors.items():
        detector.local = [kinds[kind]] * n
    times, verified = {kind: [] for kind in kinds}, 0
    for t, query in enumerate(queries):
        squared = 2 - 2 * (entries @ query)  # exact shortlist (not timed)
        shortlist = np.argpartition(squared, 50)[:50]
        shortlist = shortlist[np.argsort(squared[shortlist])]
        for kind in sorted(detectors, reverse=t % 2 == 1):  # each kind first on every other frame
            detector = detectors[kind]
            start = time.thread_time()
            checks = detector.check(query, kinds[kind], int(shortlist[0]), shortlist, entries, n, t)
            times[kind].append(time.thread_time() - start)
        verified += checks.inliers is not None
    out = {}
    for kind, values in times.items():
        timed = values[length or 10:]  # once the window is full
        out[kind] = {**percentiles(timed), "mean": 1000 * float(np.mean(timed)), "bytes": kinds[kind].nbytes}
    return {"n": n, "length": length, "verified": verified, "frames": frames, "kinds": out}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options; -> its Markdown table."""
    import torch

    torch.set_num_threads(args.threads)
    lines = [f"numpy {np.__version__}; thread CPU time; every candidate verified against itself and its null (the "
             "worst case).", "",
             "| map frames | matching | local features kept (int8) | checks p50 / p99 / mean ms | frames verified |",
             "|---:|---|---|---:|---:|"]
    for n in args.sizes:
        for length in (None, 10):
            r = run_size(n, args.frames, length)
            label = "single frame" if length is None else f"sequence L = {length}"
            for kind, k in r["kinds"].items():
                lines.append(f"| {n:,} | {label} | {kind}, {k['bytes'] / 1024:.1f} KiB a frame, "
                             f"{_size(k['bytes'] * n)} | {k['p50']:.1f} / {k['p99']:.1f} / {k['mean']:.1f} | "
                             f"{r['verified']} of {r['frames']} |")
                print(lines[-1], file=sys.stderr)
    return "\n".join(lines)


def _size(count: int) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"
