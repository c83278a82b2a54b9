"""CPU extraction, one forward per batch against one forward per image, side by side in one run.

`iter_descriptors` over real photographs (MobileNetV2 ImageNet weights, default preprocessing, torch engine) with
batches of 8 run as one forward (``forward`` bypassed) and one image at a time (what the library does on a CPU),
interleaved repetitions, medians; and whether the two give the same bytes.

    OMP_NUM_THREADS=1 python benchmarks/extract_batching.py [--threads 1] [--count 24] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from netvlad.extract import descriptors
from netvlad.models import ModelConfig, PlaceModel

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "gardens_point" / "day_left"


def rows(model: PlaceModel, paths: list[Path], batched: bool) -> tuple[np.ndarray, float]:
    """(descriptors (N, D), seconds): whole batches of 8 per forward when ``batched``, else one image at a time."""
    single = descriptors.forward
    if batched:
        descriptors.forward = lambda run, images, device: run(images)
    try:
        start = time.perf_counter()
        found = {int(i): d for ind, desc, _ in descriptors.iter_descriptors(model, paths, batch_size=8, engine="torch")
                 for i, d in zip(ind, desc, strict=True)}
        return np.stack([found[i] for i in range(len(paths))]), time.perf_counter() - start
    finally:
        descriptors.forward = single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = sorted(args.images.glob("*.jpg"))[:args.count]
    print(f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), {len(paths)} photos")
    print("| pooling | threads | batches of 8 | one image at a time | time ratio | same bytes |")
    print("|---|---:|---:|---:|---:|---|")
    for pool in ("gem", "netvlad"):
        model = PlaceModel(ModelConfig(pool=pool, num_clusters=64), pretrained=True).eval()
        times: dict[bool, list[float]] = {True: [], False: []}
        out = {}
        for _ in range(args.repeats):
            for batched in (True, False):
                out[batched], seconds = rows(model, paths, batched)
                times[batched].append(seconds)
        b, s = float(np.median(times[True])), float(np.median(times[False]))
        print(f"| {pool} | {args.threads} | {b:.1f} s | {s:.1f} s | {s / b:.2f} | "
              f"{np.array_equal(out[True], out[False])} |")


if __name__ == "__main__":
    main()
