"""Extraction throughput: the whole pipeline against the bare backbone forward, side by side in one run.

Pipeline: DataLoader workers decode and resize JPEGs, the model runs (normalise → backbone → NetVLAD), and
descriptors are written to a memory-mapped store on disk. Bare: the backbone's forward alone on the same images,
already decoded and resized, in the same batches. Target: pipeline ≥ 0.9× bare (decoding and writing hidden
behind the forward). The NetVLAD centroids are random (clustering does not change the cost).

    python benchmarks/extract.py [--images ../shared/data/gardens_point/day_left] [--count 64] [--size 480]
                                 [--batch-size 16] [--workers 2] [--device auto] [--pool netvlad] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from netvlad.cli.options import pick_device
from netvlad.data.images import load_image
from netvlad.extract.descriptors import extract_to_store
from netvlad.models import ModelConfig, PlaceModel, Preprocessing

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "gardens_point" / "day_left"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_forward(model: PlaceModel, names: list[str], root: Path, batch_size: int, device: torch.device) -> float:
    """Images per second of ``model.backbone`` alone on pre-decoded batches."""
    pre = model.config.preprocessing
    images = torch.stack([load_image(root / n, pre.resize, pre.size) for n in names])
    batches = [images[i:i + batch_size].to(device) for i in range(0, len(images), batch_size)]
    backbone = model.backbone.to(device).eval()
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    if cuda:
        backbone = backbone.to(memory_format=torch.channels_last)
        batches = [b.contiguous(memory_format=torch.channels_last) for b in batches]
    with torch.inference_mode(), autocast:
        backbone(batches[0])  # warm-up
        sync(device)
        start = time.perf_counter()
        for batch in batches:
            backbone(batch)
        sync(device)
    return len(images) / (time.perf_counter() - start)


def pipeline(model: PlaceModel, names: list[str], root: Path, args: argparse.Namespace, device) -> float:
    """Images per second of decode → resize → forward → pooling → write to a descriptor store."""
    with tempfile.TemporaryDirectory() as tmp:  # warm-up run on one batch, then the timed run
        extract_to_store(model, root, names[: args.batch_size], Path(tmp) / "warm", batch_size=args.batch_size,
                         workers=args.workers, device=device)
        sync(device)
        start = time.perf_counter()
        extract_to_store(model, root, names, Path(tmp) / "store", batch_size=args.batch_size, workers=args.workers,
                         device=device)
        sync(device)
        return len(names) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--size", type=int, default=480, help="longest side in pixels")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pool", default="netvlad")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the best is kept")
    args = parser.parse_args()
    device = pick_device(args.device)
    names = sorted(p.name for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    names = names[: args.count]
    config = ModelConfig(backbone=args.backbone, pool=args.pool, preprocessing=Preprocessing("longest", (args.size,)))
    model = PlaceModel(config).eval()
    bare, whole = 0.0, 0.0
    for _ in range(args.repeats):  # alternate the two, keep each one's best: load on the machine hits both alike
        bare = max(bare, bare_forward(model, names, args.images, args.batch_size, device))
        whole = max(whole, pipeline(model, names, args.images, args, device))
    print(f"{len(names)} images, longest side {args.size}, batch {args.batch_size}, {args.workers} workers, "
          f"{args.backbone}+{args.pool} on {device}")
    print(f"{'bare backbone forward':>26}: {bare:8.1f} images/s")
    print(f"{'whole pipeline':>26}: {whole:8.1f} images/s")
    print(f"{'ratio pipeline / bare':>26}: {whole / bare:8.2f}x  (target ≥ 0.90)")


if __name__ == "__main__":
    main()
