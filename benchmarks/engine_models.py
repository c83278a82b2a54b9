"""The models alone, torch against onnxruntime: milliseconds per image at each batch size, side by side in one run.

This is the ceiling of ``benchmarks/engine.py``'s whole-pipeline ratio: decoding and resizing cost the same with
both engines, so the pipeline's ORT ÷ torch ratio at a batch size can only be lower than the models' ratio at that
batch size. It also shows torch's own batch penalty on a CPU (per image, larger batches can be slower), which is
part of why the pipeline's ratio grows with the batch. Random input of the model's fixed size, weights as in
``benchmarks/engine.py`` (MobileNetV2 ImageNet), K = 64; alternating rounds, best of ``--repeats``.

    python benchmarks/engine_models.py [--pool netvlad] [--height 240] [--batch-sizes 1 8 16] [--threads 1]
                                       [--images 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from threads import pin_from_argv  # noqa: E402 - beside this script

pin_from_argv()  # numpy's BLAS too

import torch  # noqa: E402

from engine import build, machine  # noqa: E402
from netvlad.extract.engine import EngineConfig, make_runner  # noqa: E402


def per_image_ms(run, images: torch.Tensor, batch: int) -> float:
    """Wall milliseconds per image of ``run`` over ``images`` in batches of ``batch``."""
    start = time.perf_counter()
    for first in range(0, len(images), batch):
        run(images[first:first + batch])
    return (time.perf_counter() - start) / len(images) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", default="netvlad")
    parser.add_argument("--height", type=int, default=240, help="240 (× 320) or 480 (× 640)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=16, help="images per timed round (a multiple of each batch)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = args.height, args.height * 4 // 3
    model = build("mobilenet_v2", args.pool, height, width)
    images = torch.rand(args.images, 3, height, width, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as cache:
        runners = {"torch": make_runner(model, "torch"),
                   "onnxruntime": make_runner(model, EngineConfig("onnxruntime", args.threads, Path(cache)))}
        print(json.dumps(machine() | {"threads": args.threads, "pool": args.pool, "size": f"{height}×{width}"}))
        rows = []
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
            print(json.dumps(rows[-1]))
    print("\n| batch | torch ms/image | onnxruntime ms/image | ORT ÷ torch (models alone) |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['batch']} | {row['torch_ms']} | {row['ort_ms']} | {row['ratio']}× |")


if __name__ == "__main__":
    main()
