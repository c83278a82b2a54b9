"""Inference engines side by side: images/s of the whole extraction pipeline with torch and with onnxruntime.

Pipeline: decode JPEG → resize (fixed H × W) → model (normalise → backbone → pooling) → write to a descriptor store
on disk, in the main process (``workers=0``), so the thread count is the whole pipeline's. Each row alternates the
two engines ``--repeats`` times and keeps each one's best; the export (once per model, then cached) is timed
apart, as is the in-memory export a training refresh pays at every refresh. Random weights except MobileNetV2
(the cost does not depend on the values).

    python benchmarks/engine.py [--images ../shared/data/gardens_point/day_left] [--count 16] [--threads 1 2]
                                [--batch-sizes 1 16] [--only mobilenet_v2] [--height 480] [--repeats 2]
                                [--refresh-images 96] [--out engine.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from netvlad.data.readers.common import list_images
from netvlad.extract import engine as engine_module
from netvlad.extract.descriptors import extract_descriptors, extract_to_store
from netvlad.extract.engine import EngineConfig, make_runner
from netvlad.models import ModelConfig, PlaceModel, Preprocessing

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "gardens_point" / "day_left"
# (backbone, pooling, H, W); NetVLAD with K = 64 (the commands' default)
MODELS = [("mobilenet_v2", "netvlad", 240, 320), ("mobilenet_v2", "gem", 240, 320),
          ("mobilenet_v2", "netvlad", 480, 640), ("mobilenet_v2", "gem", 480, 640),
          ("vgg16", "netvlad", 480, 640), ("resnet50_layer3", "netvlad", 480, 640)]


def machine() -> dict:
    """CPU model, the vector ISA flags that matter to both engines, cores."""
    flags = set()
    model = platform.processor()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                flags = set(line.split(":", 1)[1].split())
    except (OSError, subprocess.CalledProcessError):
        pass
    isa = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")) or f in ("sse4_2",))
    import onnxruntime

    return {"cpu": model, "isa": isa, "cores": len(__import__("os").sched_getaffinity(0)),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def build(backbone: str, pool: str, height: int, width: int) -> PlaceModel:
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
                     "ratio": round(best["onnxruntime"] / best["torch"], 2)} | exports
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--count", type=int, default=16, help="images per timed run")
    parser.add_argument("--large-count", type=int, default=8, help="images per run for VGG16 and ResNet-50")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--only", default=None, help="rows whose backbone contains this")
    parser.add_argument("--height", type=int, default=None, help="rows of this input height only (240 or 480)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--refresh-images", type=int, default=96, help="images of the refresh comparison (0: skip)")
    parser.add_argument("--out", type=Path, default=None, help="JSON of every row")
    args = parser.parse_args()
    torch.manual_seed(0)
    names = list_images(args.images)
    facts = machine() | {"seed": 0, "images": str(args.images)}
    print(json.dumps(facts), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for spec in MODELS:
            if (args.only and args.only not in spec[0]) or (args.height and args.height != spec[2]):
                continue
            count = args.count if spec[0] == "mobilenet_v2" else args.large_count
            rows += row(spec, args.images, names[:count], args, Path(cache))
    refresh = refresh_cost(args.images, names[:args.refresh_images], 1) if args.refresh_images else None
    if refresh:
        print(json.dumps({"refresh": refresh}), flush=True)
    print("\n| model | input | threads | batch | torch img/s | onnxruntime img/s | ORT ÷ torch | export s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['size']} | {r['threads']} | {r['batch']} | {r['torch_ips']} | {r['ort_ips']} | "
              f"{r['ratio']}× | {r['export_s']} |")
    if args.out:
        args.out.write_text(json.dumps({"machine": facts, "rows": rows, "refresh": refresh}, indent=1) + "\n")


if __name__ == "__main__":
    main()
