"""GPU benchmark, one table: VGG16 + NetVLAD (K=64) + whitening 32768→4096 at 480×640, each figure side by side.

Rows: extraction images/s in float32, bf16 autocast and bf16 autocast + channels_last at batch 16–128; JPEG
decoding on CPU DataLoader workers vs ``torchvision.io.decode_jpeg`` on the device; the whole pipeline (files →
descriptors in a store) vs the bare backbone forward; one training step (4 tuples of 1 query, 1 positive,
10 negatives, forward + backward + SGD); top-k search (faiss on GPU when faiss has GPU support, else a torch
matmul top-k on the device). Weights are random (they do not change the cost). Goal: whole pipeline ≥ 1,000
images/s on one H100 (the VGG16 conv5 forward is ≈ 190 GFLOP per image at 480×640). Under 5 minutes there.

    python -m benchmarks gpu [--device cuda] [--images DIR] [--workers 8]
    python -m benchmarks gpu --tiny --device cpu     # seconds on a CPU: the same code at toy sizes

It needs nothing else from ``benchmarks/``, so on a GPU machine with netvlad installed it also runs as a script:
``python benchmarks/gpu.py [options]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from netvlad.data.images import ImageDataset, collate_images
from netvlad.extract.descriptors import extract_to_store
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.search.index import gpu_available
from netvlad.train.loss import triplet_ranking_loss
from netvlad.train.step import frozen_batchnorm_train

DEFAULT_IMAGES = Path(os.environ.get("NETVLAD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) \
    / "gardens_point" / "day_left"


@dataclass(frozen=True)
class Sizes:
    """What is measured: image (H, W) pixels, NetVLAD K, whitened dim, batches, images per timing, search sizes,
    training tuples and negatives per tuple."""

    image: tuple[int, int] = (480, 640)
    clusters: int = 64
    whitening: int = 4096
    batches: tuple[int, ...] = (16, 32, 64, 128)
    images: int = 256
    database: int = 100_000
    queries: int = 1_000
    top_k: int = 20
    tuples: int = 4
    negatives: int = 10


TINY = Sizes(image=(32, 48), clusters=4, whitening=32, batches=(2,), images=4, database=200, queries=10, tuples=1,
             negatives=2)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def build_model(sizes: Sizes, device: torch.device) -> PlaceModel:
    config = ModelConfig(backbone="vgg16", pool="netvlad", num_clusters=sizes.clusters, whitening_dim=sizes.whitening,
                         preprocessing=Preprocessing("fixed", sizes.image))
    return PlaceModel(config, pretrained=False).to(device).eval()


def precision(mode: str, device: torch.device):
    """The autocast context of ``mode`` (fp32 | bf16 | bf16+channels_last)."""
    if mode == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def forward_rows(model: PlaceModel, sizes: Sizes, device: torch.device) -> list[tuple[str, str, str]]:
    """Whole-model extraction images/s per precision mode and batch size, on images already on the device."""
    rows = []
    for mode in ("fp32", "bf16", "bf16+channels_last"):
        last = mode.endswith("channels_last")
        net = model.to(memory_format=torch.channels_last if last else torch.contiguous_format)
        for batch in sizes.batches:
            images = torch.rand(batch, 3, *sizes.image, device=device)
            if last:
                images = images.contiguous(memory_format=torch.channels_last)
            count = max(1, sizes.images // batch)
            with torch.inference_mode(), precision(mode, device):
                seconds = timed(lambda net=net, images=images, count=count: [net(images) for _ in range(count)],
                                device)
            rate = count * batch / seconds
            rows.append(("extraction (model forward)", f"{mode}, batch {batch}", f"{rate:,.1f} img/s"))
    model.to(memory_format=torch.contiguous_format)
    return rows


def decode_rows(files: list[Path], sizes: Sizes, workers: int, device: torch.device) -> list[tuple[str, str, str]]:
    """JPEG decode + resize images/s: PIL in DataLoader workers vs torchvision decode_jpeg on ``device``."""
    batch = sizes.batches[0]
    dataset = ImageDataset(files, "fixed", sizes.image)

    def cpu_workers():
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers,
                                             collate_fn=collate_images, pin_memory=device.type == "cuda")
        for _, images, _ in loader:
            images.to(device, non_blocking=True)

    data = [torchvision.io.read_file(str(f)) for f in files]

    def on_device():
        for start in range(0, len(data), batch):
            decoded = torchvision.io.decode_jpeg(data[start:start + batch], device=device)
            torch.stack([F.interpolate(im[None].float(), size=sizes.image, mode="bilinear", antialias=True)[0]
                         for im in decoded])

    cpu_rate, device_rate = len(files) / timed(cpu_workers, device), len(files) / timed(on_device, device)
    return [("JPEG decode + resize", f"PIL, {workers} CPU workers, batch {batch}", f"{cpu_rate:,.1f} img/s"),
            ("JPEG decode + resize", f"decode_jpeg on {device.type}, batch {batch}", f"{device_rate:,.1f} img/s")]


def pipeline_rows(model: PlaceModel, files: list[Path], sizes: Sizes, workers: int,
                  device: torch.device) -> list[tuple[str, str, str]]:
    """Files → descriptors in a store (decode, resize, bf16 channels_last forward, write) vs the bare backbone."""
    batch = sizes.batches[-1] if len(files) >= sizes.batches[-1] else sizes.batches[0]
    root, names = files[0].parent, [f.name for f in files]
    with tempfile.TemporaryDirectory() as tmp:
        runs = iter(range(10**6))
        whole = timed(lambda: extract_to_store(model, root, names, Path(tmp) / f"s{next(runs)}", batch_size=batch,
                                               workers=workers, device=device), device)
    images = torch.rand(batch, 3, *sizes.image, device=device)
    backbone = model.backbone
    if device.type == "cuda":
        backbone, images = backbone.to(memory_format=torch.channels_last), images.contiguous(
            memory_format=torch.channels_last)
    count = max(1, len(files) // batch)
    with torch.inference_mode(), precision("bf16", device):
        bare = timed(lambda: [backbone(images) for _ in range(count)], device)
    model.to(memory_format=torch.contiguous_format)
    whole_rate, bare_rate = len(files) / whole, count * batch / bare
    return [("whole pipeline: files → store", f"batch {batch}, {workers} workers", f"{whole_rate:,.1f} img/s"),
            ("bare backbone forward", f"batch {batch}, bf16", f"{bare_rate:,.1f} img/s"),
            ("pipeline / bare", "", f"{whole_rate / bare_rate:.2f}×")]


def training_row(model: PlaceModel, sizes: Sizes, device: torch.device) -> list[tuple[str, str, str]]:
    """One SGD step on ``sizes.tuples`` tuples of 1 query, 1 positive and ``sizes.negatives`` negatives (4 × 12 = 48
    images by default), forward + backward, bf16."""
    frozen_batchnorm_train(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    per_tuple = 2 + sizes.negatives
    images = torch.rand(sizes.tuples * per_tuple, 3, *sizes.image, device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with precision("bf16", device):
            d = model(images).float().view(sizes.tuples, per_tuple, -1)
        triplet_ranking_loss(d[:, 0], d[:, 1:2], d[:, 2:], 0.1).sum().backward()
        optimizer.step()

    seconds = timed(step, device)
    model.eval()
    figure = f"{seconds * 1000:,.1f} ms ({sizes.tuples / seconds:.1f} tuples/s)"
    tuples = f"{sizes.tuples} tuple{'s' * (sizes.tuples != 1)}"
    setting = f"{tuples} × (1+1+{sizes.negatives}) images, bf16, forward + backward + SGD"
    return [("training step", setting, figure)]


def search_row(sizes: Sizes, device: torch.device) -> list[tuple[str, str, str]]:
    """Top-k over ``database`` unit descriptors for ``queries`` queries: faiss GPU if present, else torch matmul."""
    rng = np.random.default_rng(0)
    db = rng.standard_normal((sizes.database, sizes.whitening), dtype=np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    queries = db[: sizes.queries] + 0.01
    setting = f"{sizes.database:,} × {sizes.whitening}-D, top {sizes.top_k}"
    if device.type == "cuda" and gpu_available():
        import faiss  # noqa: PLC0415

        index = faiss.GpuIndexFlatL2(faiss.StandardGpuResources(), sizes.whitening)
        index.add(db)
        seconds = timed(lambda: index.search(queries, sizes.top_k), device)
        return [("search", f"faiss GPU flat, {setting}", f"{sizes.queries / seconds:,.0f} queries/s")]
    db_t, q_t = torch.from_numpy(db).to(device), torch.from_numpy(queries).to(device)

    def matmul_topk():
        for start in range(0, len(q_t), 256):
            torch.topk(q_t[start:start + 256] @ db_t.T, sizes.top_k, dim=1)

    seconds = timed(matmul_topk, device)
    return [("search", f"torch matmul top-k on {device.type}, {setting}", f"{sizes.queries / seconds:,.0f} queries/s")]


def image_files(folder: Path | None, count: int, size: tuple[int, int], tmp: Path) -> list[Path]:
    """``count`` JPEGs: from ``folder`` (repeated if needed) or random ones written to ``tmp``."""
    found = []
    if folder is not None and folder.is_dir():
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        path = tmp / f"{i:05d}.jpg"
        if found:
            path.symlink_to(found[i % len(found)].resolve())
        else:
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path, quality=90)
        files.append(path)
    return files


def measure(sizes: Sizes, device: torch.device, images: Path | None, workers: int) -> list[tuple[str, str, str]]:
    """Every row of the table, measured in one process."""
    torch.manual_seed(0)
    model = build_model(sizes, device)
    rows = forward_rows(model, sizes, device)
    with tempfile.TemporaryDirectory() as tmp:
        files = image_files(images, sizes.images, sizes.image, Path(tmp))
        rows += decode_rows(files, sizes, workers, device)
        rows += pipeline_rows(model, files, sizes, workers, device)
    rows += training_row(model, sizes, device)
    rows += search_row(sizes, device)
    return rows


def table(rows: list[tuple[str, str, str]]) -> str:
    """A markdown table of (measurement, setting, figure)."""
    lines = [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(["| measurement | setting | figure |", "|---|---|---:|", *lines])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="JPEG folder (else random JPEGs)")
    parser.add_argument("--workers", type=int, default=8, help="CPU decoding workers")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: seconds on a CPU (for tests)")


def run(args: argparse.Namespace) -> str:
    """Every row measured on ``--device``; returns the device line and the Markdown table."""
    device = torch.device(args.device)
    sizes = TINY if args.tiny else Sizes()
    start = time.perf_counter()
    rows = measure(sizes, device, args.images, args.workers)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return (f"VGG16 + NetVLAD K={sizes.clusters} + whitening {sizes.whitening}, {sizes.image[0]}×{sizes.image[1]}, "
            f"random weights, on {name} (torch {torch.__version__}; {time.perf_counter() - start:.0f} s)\n\n"
            + table(rows))


def main(argv: list[str] | None = None) -> str:
    """``python benchmarks/gpu.py [options]``: run and print the table (no other file of benchmarks/ needed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    text = run(parser.parse_args(argv))
    print(text)
    return text


if __name__ == "__main__":
    main()
