"""Cost of ``--deterministic``: CPU seconds of the demo's kernels with the pinned code paths and with the CPU's own.

Each setting runs in a fresh process (the kernels are chosen when torch loads), one after the other, at 1 thread;
CPU time (not wall time) is measured, so a machine shared with other work still gives a fair ratio.

    python -m benchmarks deterministic [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks.common import REPO, add_results_option

PROBE = r"""
import json, sys, time
import numpy as np, torch, faiss
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.numerics import numeric_environment
torch.manual_seed(0); torch.set_num_threads(1); faiss.omp_set_num_threads(1)
repeats = int(sys.argv[1])
model = PlaceModel(ModelConfig(num_clusters=16, preprocessing=Preprocessing("fixed", (120, 160))), pretrained=False)
images = torch.rand(8, 3, 120, 160)
def timed(step):
    step()  # warm-up
    start = time.process_time()
    for _ in range(repeats):
        step()
    return (time.process_time() - start) / repeats
def train_step():
    model.train(); model.zero_grad(); model(images).square().sum().backward()
def extract():
    model.eval()
    with torch.inference_mode():
        model(images)
x = np.random.default_rng(0).standard_normal((20000, 96)).astype(np.float32)
def kmeans():
    faiss.Kmeans(96, 16, niter=20, seed=0).train(x)
out = {"train_step_s": timed(train_step), "extract_s": timed(extract), "kmeans_s": timed(kmeans),
       "numerics": numeric_environment()}
print("RESULT " + json.dumps(out))
"""


def measure(deterministic: bool, repeats: int, only: str | None = None) -> dict:
    """CPU seconds per call of each kernel group in a fresh process, pinned (all, or ``only`` one switch) or not."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    prelude = "from netvlad.numerics import pin_kernels; pin_kernels()\n" if deterministic else ""
    if only:
        from netvlad.numerics import PINNED

        env[only], prelude = PINNED[only], ""
    done = subprocess.run([sys.executable, "-c", prelude + PROBE, str(repeats)], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--each", action="store_true", help="also each switch alone (which one costs)")
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options."""
    fast, pinned = measure(False, args.repeats), measure(True, args.repeats)
    env = fast["numerics"]
    lines = [f"torch CPU capability {env['torch_cpu_capability']}, pinned "
             f"{pinned['numerics']['torch_cpu_capability']}; CPU seconds per call:", "",
             "| kernels | fastest | pinned | ratio |", "|---|---:|---:|---:|"]
    for key, label in (("train_step_s", "train step (8 × 120×160)"), ("extract_s", "extraction (8 images)"),
                       ("kmeans_s", "faiss k-means (20k × 96)")):
        lines.append(f"| {label} | {fast[key]:.3f} | {pinned[key]:.3f} | {pinned[key] / fast[key]:.2f}× |")
    if args.each:
        from netvlad.numerics import PINNED

        for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR"):
            alone = measure(False, args.repeats, only=name)
            lines.append(f"\n{name}={PINNED[name]} alone: " + ", ".join(
                f"{key.removesuffix('_s')} {alone[key] / fast[key]:.2f}×" for key in ("train_step_s", "extract_s")))
    return "\n".join(lines)
