"""Extraction speed, side by side in one run, in four parts (``--part``):

- ``pipeline`` (default): images/s of the whole extraction pipeline with torch and with onnxruntime — decode JPEG →
  resize (fixed H × W) → model (normalise → backbone → pooling) → write to a descriptor store on disk, in the main
  process (``workers=0``), so the thread count is the whole pipeline's. Each row alternates the two engines
  ``--repeats`` times and keeps each one's best (``load``: the 1-minute load average after the row); the export
  (once per model, then cached) is timed apart, as is the in-memory export a training refresh pays at every
  refresh (``--refresh-images``).
- ``models``: the models alone, torch against onnxruntime, ms per image at each batch size (random input of the
  model's fixed size, ``--pool``, ``--height``): the ceiling of the pipeline's ratio, since decoding and resizing
  cost the same with both engines.
- ``layout``: the torch engine's layouts and batch policies (``TorchRunner``): ``nchw`` (the model as built, the
  batch in one call), ``channels_last``, ``folded`` (eval batch norms folded into the convolutions, channels_last),
  ``per_image`` (folded, traced, one image per call) and ``default`` (what ``TorchRunner`` does unasked: also one
  image a call, ``TORCH_CPU_IMAGES``; ``python -m benchmarks cpu-chunk`` measures that choice); median ms per image
  over ``--repeats`` rotating rounds (at one thread the thread's CPU time, else wall time), the speed-up over
  ``nchw``, the default's largest difference from ``nchw`` and whether two default runs gave identical bits.
- ``decode``: full JPEG decode (the default) against ``--fast-decode`` (libjpeg's reduced-scale decode before the
  same resize): decode + resize ms per image, the largest pixel difference and the largest descriptor difference
  of the off-the-shelf model (ImageNet MobileNetV2 + NetVLAD, K = 64) on the same frames.

Random weights except MobileNetV2 (the cost does not depend on the values).

    python -m benchmarks engine [--part pipeline] [--count 16] [--threads 1 2] [--batch-sizes 1 16]
                                [--only mobilenet_v2] [--height 480] [--repeats 2] [--refresh-images 96]
    python -m benchmarks engine --part models [--pool netvlad] [--height 240] [--batch-sizes 1 8 16]
    python -m benchmarks engine --part layout [--models mobilenet_v2:gem:240 vgg16:netvlad:120] [--variants …]
    python -m benchmarks engine --part decode [--count 40] [--repeats 5]
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

from benchmarks.common import SHARED_DATA, add_results_option, machine
from netvlad.data.images import load_image
from netvlad.data.readers.common import list_images
from netvlad.extract import engine as engine_module
from netvlad.extract.descriptors import extract_descriptors, extract_to_store
from netvlad.extract.engine import EngineConfig, TorchRunner, make_runner
from netvlad.models import ModelConfig, PlaceModel, Preprocessing

PARTS = ("pipeline", "models", "layout", "decode")
# per part: batch sizes, repeats, images per timed run
DEFAULTS = {"pipeline": ([1, 16], 2, 16), "models": ([1, 8, 16], 3, 16), "layout": ([1, 8, 16], 5, 16),
            "decode": ([1], 5, 40)}

# (backbone, pooling, H, W); NetVLAD with K = 64 (the commands' default)
MODELS = [("mobilenet_v2", "netvlad", 240, 320), ("mobilenet_v2", "gem", 240, 320),
          ("mobilenet_v2", "netvlad", 480, 640), ("mobilenet_v2", "gem", 480, 640),
          ("vgg16", "netvlad", 480, 640), ("resnet50_layer3", "netvlad", 480, 640)]


def build(backbone: str, pool: str, height: int, width: int) -> PlaceModel:
    """The model at a fixed input size (NetVLAD K = 64); ImageNet weights for MobileNetV2, else random."""
    config = ModelConfig(backbone=backbone, pool=pool, num_clusters=64,
                         preprocessing=Preprocessing("fixed", (height, width)))
    return PlaceModel(config, pretrained=backbone == "mobilenet_v2").eval()


def pipeline_rate(model: PlaceModel, root: Path, names: list[str], batch: int, runner) -> float:
    """Images per second of decode → resize → model → store, one warm-up batch first."""
    with tempfile.TemporaryDirectory() as tmp:
        extract_to_store(model, root, names[:batch], Path(tmp) / "warm", batch_size=batch, engine=runner)
        start = time.perf_counter()
        extract_to_store(model, root, names, Path(tmp) / "store", batch_size=batch, engine=runner)
        return len(names) / (time.perf_counter() - start)


def export_times(model: PlaceModel, cache: Path, threads: int) -> dict:
    """Seconds: first export into the cache (with its check), reuse from the cache, in-memory export (refresh)."""
    times = {}
    for label, config in (("export_s", EngineConfig("onnxruntime", threads, cache)),
                          ("cached_s", EngineConfig("onnxruntime", threads, cache)),
                          ("in_memory_s", EngineConfig("onnxruntime", threads, cache, persist=False))):
        engine_module._SESSIONS.clear()
        start = time.perf_counter()
        make_runner(model, config)
        times[label] = round(time.perf_counter() - start, 2)
    return times


def row(spec, root: Path, names: list[str], args, cache: Path) -> list[dict]:
    """One model of :data:`MODELS`: a row per thread count and batch size, the engines alternating."""
    model = build(*spec)
    torch.set_num_threads(max(args.threads))
    out = []
    exports = export_times(model, cache, max(args.threads))
    for threads in args.threads:
        torch.set_num_threads(threads)
        engine_module._SESSIONS.clear()
        runners = {"torch": make_runner(model, "torch"),
                   "onnxruntime": make_runner(model, EngineConfig("onnxruntime", threads, cache))}
        for batch in args.batch_sizes:
            best = {name: 0.0 for name in runners}
            for _ in range(args.repeats):
                for name, runner in runners.items():
                    best[name] = max(best[name], pipeline_rate(model, root, names, batch, runner))
            entry = {"model": f"{spec[0]} + {spec[1]}", "size": f"{spec[2]}×{spec[3]}", "threads": threads,
                     "batch": batch, "torch_ips": round(best["torch"], 2), "ort_ips": round(best["onnxruntime"], 2),
                     "ratio": round(best["onnxruntime"] / best["torch"], 2),
                     "load": round(os.getloadavg()[0], 1)} | exports
            print(json.dumps(entry), flush=True)
            out.append(entry)
    return out


def refresh_cost(root: Path, names: list[str], threads: int) -> dict:
    """A training refresh of the demo's model (MobileNetV2 + NetVLAD K=16, 120×160): torch against onnxruntime with
    the weights exported in memory first (what every refresh pays)."""
    torch.set_num_threads(threads)
    config = ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=16,
                         preprocessing=Preprocessing("fixed", (120, 160)))
    model = PlaceModel(config, pretrained=True).eval()
    extract_descriptors(model, [root / n for n in names[:8]], batch_size=8)  # warm-up
    result = {}
    for engine in ("torch", EngineConfig("onnxruntime", threads, persist=False)):
        engine_module._SESSIONS.clear()
        start = time.perf_counter()
        extract_descriptors(model, [root / n for n in names], batch_size=16, engine=engine)
        result["torch_s" if engine == "torch" else "ort_with_export_s"] = round(time.perf_counter() - start, 2)
    result["images"] = len(names)
    return result


def pipeline_part(args: argparse.Namespace) -> str:
    """The whole pipeline, torch against onnxruntime, per model × threads × batch (and the refresh cost)."""
    torch.manual_seed(0)
    root = args.data / "gardens_point" / "day_left"
    names = list_images(root)
    print(json.dumps(machine() | {"images": str(root)}), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for spec in MODELS:
            if (args.only and args.only not in spec[0]) or (args.height and args.height != spec[2]):
                continue
            count = args.count if spec[0] == "mobilenet_v2" else args.large_count
            rows += row(spec, root, names[:count], args, Path(cache))
    refresh = refresh_cost(root, names[:args.refresh_images], 1) if args.refresh_images else None
    if refresh:
        print(json.dumps({"refresh": refresh}), flush=True)
    lines = ["| model | input | threads | batch | torch img/s | onnxruntime img/s | ORT ÷ torch | export s | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['size']} | {r['threads']} | {r['batch']} | {r['torch_ips']} | {r['ort_ips']} | "
              f"{r['ratio']}× | {r['export_s']} | {r['load']} |" for r in rows]
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "rows": rows, "refresh": refresh}, indent=1) + "\n")
    return "\n".join(lines)


def per_image_ms(run, images: torch.Tensor, batch: int) -> float:
    """Wall milliseconds per image of ``run`` over ``images`` in batches of ``batch``."""
    start = time.perf_counter()
    for first in range(0, len(images), batch):
        run(images[first:first + batch])
    return (time.perf_counter() - start) / len(images) * 1e3


def models_part(args: argparse.Namespace) -> str:
    """The models alone, torch against onnxruntime: ms per image at each batch size."""
    threads = args.threads[0]
    height = args.height or 240
    width = height * 4 // 3
    model = build("mobilenet_v2", args.pool, height, width)
    images = torch.rand(args.count, 3, height, width, generator=torch.Generator().manual_seed(0))
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        runners = {"torch": make_runner(model, "torch"),
                   "onnxruntime": make_runner(model, EngineConfig("onnxruntime", threads, Path(cache)))}
        print(json.dumps(machine() | {"pool": args.pool, "size": f"{height}×{width}"}), flush=True)
        for batch in args.batch_sizes:
            for runner in runners.values():
                runner(images[:batch])  # warm-up
            best = {name: float("inf") for name in runners}
            for _ in range(args.repeats):
                for name, runner in runners.items():
                    best[name] = min(best[name], per_image_ms(runner, images, batch))
            torch_ms, ort_ms = best["torch"], best["onnxruntime"]
            rows.append({"batch": batch, "torch_ms": round(torch_ms, 2), "ort_ms": round(ort_ms, 2),
                         "ratio": round(torch_ms / ort_ms, 2)})
            print(json.dumps(rows[-1]), flush=True)
    lines = ["| batch | torch ms/image | onnxruntime ms/image | ORT ÷ torch (models alone) |", "|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['torch_ms']} | {r['ort_ms']} | {r['ratio']}× |" for r in rows]
    return "\n".join(lines)


WHOLE = 1 << 30  # images per call: the whole batch
VARIANTS = {"nchw": {"fold": False, "channels_last": False, "trace": False, "chunk": WHOLE},
            "channels_last": {"fold": False, "channels_last": True, "trace": False, "chunk": WHOLE},
            "folded": {"fold": True, "channels_last": True, "trace": False, "chunk": WHOLE},
            "per_image": {"fold": True, "channels_last": True, "chunk": 1},
            "default": {}}
DEFAULT_MODELS = ["mobilenet_v2:gem:240", "mobilenet_v2:gem:480", "resnet50_layer3:netvlad:120",
                  "vgg16:netvlad:120"]


def cpu_ms_per_image(run, images: torch.Tensor, batch: int) -> float:
    """CPU milliseconds per image of ``run`` over ``images`` in batches of ``batch`` (the calling thread's time,
    which is all of it at one torch thread: unlike wall time, it does not count the waits for a busy machine)."""
    clock = time.thread_time if torch.get_num_threads() == 1 else time.perf_counter
    start = clock()
    for first in range(0, len(images), batch):
        run(images[first:first + batch])
    return (clock() - start) / len(images) * 1e3


def layout_rows(spec: str, batch_sizes: list[int], count: int, repeats: int, variants: list[str]) -> list[dict]:
    """One model (``backbone:pool:height``, width = 4/3 height): a row per batch size."""
    backbone, pool, height = spec.split(":")
    height = int(height)
    width = height * 4 // 3
    model = build(backbone, pool, height, width)
    runners = {name: TorchRunner(model, torch.device("cpu"), **VARIANTS[name]) for name in variants}
    images = torch.rand(count, 3, height, width, generator=torch.Generator().manual_seed(0))
    reference = TorchRunner(model, torch.device("cpu"), **VARIANTS["nchw"])(images[:2])
    first, second = runners["default"](images[:2]), runners["default"](images[:2])
    for run in runners.values():
        run(images[:max(batch_sizes)])  # warm-up (and the folded copies made)
    times: dict[tuple[str, int], list[float]] = {}
    names = list(runners)
    for round_ in range(repeats):
        for batch in batch_sizes:
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                times.setdefault((name, batch), []).append(cpu_ms_per_image(runners[name], images, batch))
    rows = []
    for batch in batch_sizes:
        ms = {name: statistics.median(times[name, batch]) for name in names}
        rows.append({"model": f"{backbone} + {pool}", "size": f"{height}×{width}", "batch": batch,
                     "ms": {name: round(value, 2) for name, value in ms.items()},
                     "speedup": {name: round(ms.get("nchw", np.nan) / value, 2) for name, value in ms.items()},
                     "max_abs_difference": float(np.abs(first - reference).max()),
                     "same_bits": bool(np.array_equal(first, second))})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def layout_part(args: argparse.Namespace) -> str:
    """The torch engine's layouts and batch policies, per model spec and batch size."""
    print(json.dumps(machine() | {"repeats": args.repeats, "images": args.count}), flush=True)
    variants = list(dict.fromkeys([*args.variants, "default"]))  # the default always runs
    rows = [r for spec in args.models for r in layout_rows(spec, args.batch_sizes, args.count, args.repeats, variants)]
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    names = [name for name in VARIANTS if name in rows[0]["ms"]]
    lines = ["| model | input | batch | " + " | ".join(f"{name} ms/image" for name in names)
             + " | default ÷ nchw (speed) | max abs Δ |", "|---|---|---:|" + "---:|" * len(names) + "---:|---:|"]
    for r in rows:
        cells = " | ".join(str(r["ms"][name]) for name in names)
        lines.append(f"| {r['model']} | {r['size']} | {r['batch']} | {cells} | **{r['speedup']['default']}×** "
                     f"| {r['max_abs_difference']:.1e} |")
    return "\n".join(lines)


# (label, images under the data folder, resize, size)
DECODE_CASES = [
    ("Gardens Point 960×540, longest 640 (off-the-shelf default)", "gardens_point/day_left", "longest", (640,)),
    ("Gardens Point 960×540, fixed 480×640 (Patch-NetVLAD)", "gardens_point/day_left", "fixed", (480, 640)),
    ("Gardens Point 960×540, fixed 240×320", "gardens_point/day_left", "fixed", (240, 320)),
    ("Gardens Point 960×540, longest 240", "gardens_point/day_left", "longest", (240,)),
    ("Tokyo query 3264×2448 (progressive JPEG), longest 640", "tokyo_pair/tokyo_query.jpg", "longest", (640,)),
]


def seconds_per_image(paths: list[Path], resize: str, size: tuple[int, ...], repeats: int) -> tuple[float, float]:
    """(full, fast) decode + resize seconds per image: each image timed both ways in turn, the best of ``repeats``
    kept per image and way, so that both see the same machine load."""
    best = np.full((len(paths), 2), np.inf)
    for _ in range(repeats):
        for i, path in enumerate(paths):
            for j, fast in enumerate((False, True)):
                start = time.perf_counter()
                load_image(path, resize, size, fast)
                best[i, j] = min(best[i, j], time.perf_counter() - start)
    return tuple(best.mean(axis=0))


def decode_part(args: argparse.Namespace) -> str:
    """Full against reduced-scale JPEG decoding: time, pixel and descriptor differences per input size."""
    torch.manual_seed(0)
    rows = []
    for label, where, resize, size in DECODE_CASES:
        source = args.data / where
        paths = ([source] if source.is_file() else
                 sorted(source.glob("*.jpg"))[::max(1, len(list(source.glob("*.jpg"))) // args.count)][:args.count])
        full_s, fast_s = seconds_per_image(paths, resize, size, args.repeats)
        model = PlaceModel(ModelConfig(preprocessing=Preprocessing(resize, size))).eval()
        pixel, descriptor, cosine = 0.0, 0.0, 1.0
        for path in paths:
            full, fast = load_image(path, resize, size), load_image(path, resize, size, True)
            pixel = max(pixel, float((full - fast).abs().max()) * 255)
            with torch.inference_mode():
                a, b = model(torch.stack([full, fast])).numpy()
            descriptor, cosine = max(descriptor, float(np.abs(a - b).max())), min(cosine, float(a @ b))
        rows.append(f"| {label} | {len(paths)} | {full_s * 1e3:.1f} | {fast_s * 1e3:.1f} | {full_s / fast_s:.1f}× | "
                    f"{pixel:.0f}/255 | {descriptor:.2g} | {cosine:.5f} |")
    header = ("| images, input size | frames | full decode ms/image | fast ms/image | speed-up | largest pixel "
              "difference | largest descriptor difference | lowest cosine |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    return "\n".join([header, *rows])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--part", choices=PARTS, default="pipeline", help="what to time (default: pipeline)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder (Gardens Point, Tokyo)")
    parser.add_argument("--count", type=int, default=None,
                        help="images per timed run (decode: frames per folder; default 16, decode 40)")
    parser.add_argument("--large-count", type=int, default=8, help="pipeline: images per run for VGG16 and ResNet-50")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch and onnxruntime threads (several: pipeline only)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="default 1 16 (pipeline), 1 8 16 (models, layout)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds, best (median: layout) kept (default 2 pipeline, 3 models, 5 layout and decode)")
    parser.add_argument("--only", default=None, help="pipeline: rows whose backbone contains this")
    parser.add_argument("--height", type=int, default=None,
                        help="pipeline: rows of this input height only (240 or 480); models: its height (240)")
    parser.add_argument("--refresh-images", type=int, default=96,
                        help="pipeline: images of the refresh comparison (0: skip)")
    parser.add_argument("--pool", default="netvlad", help="models: the pooling")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                        help="layout: backbone:pool:height (width 4/3 of it)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="layout: the runners compared (the default always runs)")
    parser.add_argument("--out", type=Path, default=None, help="pipeline, layout: JSON of every row")
    add_results_option(parser)


def fragment_name(args: argparse.Namespace) -> str:
    """``engine-<part>``: each part is its own docs table."""
    return f"engine-{args.part}"


def run(args: argparse.Namespace) -> str:
    """Run the part chosen; returns its Markdown table."""
    if len(args.threads) > 1 and args.part != "pipeline":
        raise SystemExit(f"--threads takes one count with --part {args.part} (several: --part pipeline only)")
    batches, repeats, count = DEFAULTS[args.part]
    args.batch_sizes = args.batch_sizes or batches
    args.repeats = args.repeats if args.repeats is not None else repeats
    args.count = args.count or count
    torch.set_num_threads(args.threads[0])
    parts = {"pipeline": pipeline_part, "models": models_part, "layout": layout_part, "decode": decode_part}
    return parts[args.part](args)
