"""The torch engine's CPU batch policy end to end: extraction of real photographs with the policy against one image
a call, measured side by side in one run.

For each model (``backbone:pool:height``, width 4/3 of it, NetVLAD K = 64; MobileNetV2 with its ImageNet
weights, the others random) and thread count, ``extract_descriptors`` over the first ``--images`` Gardens Point
day_left frames (batch size 8, decoding overlapped as the library runs it), two ways through the torch engine:

- ``one a call``: ``EngineConfig("torch", chunk=1)``;
- ``policy``: ``engine="torch"`` as the library runs it (:mod:`netvlad.extract.batch_policy`): its decision
  measured once into an empty cache folder before the timed rounds (``measure s``: that one-off cost; 0 where the
  policy does not measure: one thread, large inputs), and the images a call it chose.

``traced ms/image`` is the policy's own measurement (:func:`netvlad.extract.batch_policy.measure`: the traced
model on 8 random images, one a call against 8 a call, fastest of 3 alternating rounds) run for every row, also
where the policy does not measure, as the data behind its rules.

Each cell is the median over ``--repeats`` rounds (the two in alternating order) of wall milliseconds per image;
``speed-up`` is one a call ÷ policy (> 1: the policy is faster); ``max abs Δ`` the largest difference between the
two's descriptors; ``load`` the machine's 1-minute load average when the row finished.

    python -m benchmarks batch-policy [--models mobilenet_v2:gem:240 …] [--threads 1 2] [--images 64]
                                      [--repeats 5] [--results docs/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import SHARED_DATA, add_results_option
from benchmarks.engine import build
from netvlad.extract import engine as engine_module
from netvlad.extract.batch_policy import measure as measure_chunks
from netvlad.extract.batch_policy import policy_folder, policy_key
from netvlad.extract.descriptors import extract_descriptors
from netvlad.extract.engine import EngineConfig, TorchRunner

DEFAULT_MODELS = ["mobilenet_v2:gem:240", "resnet50_layer3:netvlad:120", "mobilenet_v2:netvlad:360",
                  "mobilenet_v2:netvlad:480"]
BATCH = 8


def wall_ms(work, count: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = work()
    return (time.perf_counter() - start) / count * 1e3, out


def measure(spec: str, threads: int, paths: list[Path], repeats: int) -> dict:
    """One model at ``threads`` torch threads: wall ms per image one a call and by the policy."""
    backbone, pool, height = spec.split(":")
    height = int(height)
    torch.set_num_threads(threads)
    model = build(backbone, pool, height, height * 4 // 3)
    engines = {"one a call": EngineConfig("torch", chunk=1), "policy": "torch"}

    def run(name: str) -> np.ndarray:
        return extract_descriptors(model, paths, batch_size=BATCH, engine=engines[name])

    run("one a call")  # the folded copy made and traced
    start = time.perf_counter()
    run("policy")  # the decision measured (the cache folder is empty), its chunk traced
    first = time.perf_counter() - start
    key = policy_key(model.config, {"fold": True, "channels_last": True}, (3, height, height * 4 // 3), threads)
    cached = policy_folder() / f"{key.stem}.json"
    measured_first = cached.is_file()  # measured by the first policy run (not at one thread or large inputs)
    traced = TorchRunner(model, torch.device("cpu"))
    with torch.inference_mode():  # what the policy measures, measured here for every row
        measured = measure_chunks(traced._call, torch.rand(8, 3, height, height * 4 // 3,
                                                           generator=torch.Generator().manual_seed(0)))
    times: dict[str, list[float]] = {name: [] for name in engines}
    outputs = {}
    names = list(engines)
    for round_ in range(repeats):
        for name in names[round_ % 2:] + names[:round_ % 2]:
            ms, outputs[name] = wall_ms(lambda name=name: run(name), len(paths))
            times[name].append(ms)
    ms = {name: statistics.median(values) for name, values in times.items()}
    row = {"model": f"{backbone} + {pool}", "size": f"{height}×{height * 4 // 3}", "threads": threads,
           "images": len(paths), "ms": {name: round(value, 2) for name, value in ms.items()},
           "chunk": json.loads(cached.read_text())["chunk"] if cached.is_file() else 1, "measured_ms": measured,
           "measure_s": round(first - ms["policy"] * len(paths) / 1e3, 2) if measured_first else 0.0,
           "max_abs_difference": float(np.abs(outputs["policy"] - outputs["one a call"]).max()),
           "load": round(os.getloadavg()[0], 1)}
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict]) -> str:
    """The Markdown table: per model, size and thread count, ms per image both ways and the policy's decision."""
    lines = ["| model | input | threads | images | one a call (ms/image) | policy (ms/image) | speed-up | "
             "images a call chosen | traced ms/image 1 / 8 a call | measure s | max abs Δ | load |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for row in rows:
        one, policy = row["ms"]["one a call"], row["ms"]["policy"]
        measured = " / ".join(str(row["measured_ms"].get(k, "–")) for k in (1, 8))
        lines.append(f"| {row['model']} | {row['size']} | {row['threads']} | {row['images']} | {one} | {policy} | "
                     f"{one / policy:.2f}× | {row['chunk']} | {measured} | {row['measure_s']} | "
                     f"{row['max_abs_difference']:.1e} | {row['load']} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="backbone:pool:height (width 4/3 of it)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads, a row each")
    parser.add_argument("--images", type=int, default=64, help="Gardens Point day_left frames extracted a round")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds")
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Every model at every thread count, each measured into an empty policy cache; returns the Markdown table."""
    paths = sorted((SHARED_DATA / "gardens_point" / "day_left").glob("*.jpg"))[:args.images]
    if len(paths) < args.images:
        raise SystemExit(f"batch-policy needs {args.images} frames in {SHARED_DATA}/gardens_point/day_left")
    rows = []
    with tempfile.TemporaryDirectory(prefix="netvlad-batch-policy-") as cache:
        os.environ["NETVLAD_CACHE"] = cache
        for spec in args.models:
            for threads in args.threads:
                engine_module._PREPARED.clear()
                rows.append(measure(spec, threads, paths, args.repeats))
    return (f"Wall milliseconds per image of `extract_descriptors` (batch size {BATCH}) over {args.images} Gardens "
            f"Point frames, median of {args.repeats} rounds after one untimed each, the two in alternating order:"
            "\n\n" + table(rows))
