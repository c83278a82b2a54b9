"""The torch engine on a CPU, its layouts and batch policies side by side: milliseconds per image, ratios to NCHW.

Five ways to run the same model (``netvlad.extract.engine.TorchRunner``), random input of a fixed size:

- ``nchw``: the model as built (contiguous NCHW, batch norms separate), the caller's batch in one call;
- ``channels_last``: the same model in channels_last, the batch in one call;
- ``folded``: eval batch norms folded into the convolutions, channels_last, the batch in one call;
- ``per_image``: folded, channels_last, one image per call;
- ``default``: folded, channels_last, the batch in chunks of at most ``CPU_BATCH_PIXELS`` pixels (the engine's
  CPU default: 4 images at 240×320, 1 from 480×640 up).

Every variant runs every batch size in every round, the variants' order rotating from round to round; the table
gives each one's median milliseconds per image (at one thread the thread's CPU time, else wall time) over
``--repeats`` rounds and its speed-up over ``nchw`` at the same batch size (``nchw ÷ variant``, > 1 is faster).
``max |Δ|`` is the largest difference of the default's descriptors from ``nchw``'s; ``same bits`` says whether two
default runs gave identical bits. MobileNetV2 has its ImageNet weights (offline), the others random weights (the
cost does not depend on the values).

    python benchmarks/torch_layout.py [--models mobilenet_v2:gem:240 mobilenet_v2:gem:480 resnet50_layer3:netvlad:120
                                       vgg16:netvlad:120] [--batch-sizes 1 8 16] [--images 16] [--repeats 5]
                                      [--threads 1] [--out torch_layout.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from threads import pin_from_argv  # noqa: E402 - beside this script

pin_from_argv()  # numpy's BLAS too

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine import build, machine  # noqa: E402
from netvlad.extract.engine import TorchRunner  # noqa: E402

VARIANTS = {"nchw": {"fold": False, "channels_last": False, "cpu_pixels": None},
            "channels_last": {"fold": False, "channels_last": True, "cpu_pixels": None},
            "folded": {"fold": True, "channels_last": True, "cpu_pixels": None},
            "per_image": {"fold": True, "channels_last": True, "cpu_pixels": 1},
            "default": {}}
DEFAULT_MODELS = ["mobilenet_v2:gem:240", "mobilenet_v2:gem:480", "resnet50_layer3:netvlad:120",
                  "vgg16:netvlad:120"]


def per_image_ms(run, images: torch.Tensor, batch: int) -> float:
    """CPU milliseconds per image of ``run`` over ``images`` in batches of ``batch`` (the calling thread's time,
    which is all of it at one torch thread: unlike wall time, it does not count the waits for a busy machine)."""
    clock = time.thread_time if torch.get_num_threads() == 1 else time.perf_counter
    start = clock()
    for first in range(0, len(images), batch):
        run(images[first:first + batch])
    return (clock() - start) / len(images) * 1e3


def measure(spec: str, batch_sizes: list[int], count: int, repeats: int, variants: list[str]) -> list[dict]:
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
                times.setdefault((name, batch), []).append(per_image_ms(runners[name], images, batch))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="backbone:pool:height (width 4/3 of it)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--images", type=int, default=16, help="images per timed round (a multiple of each batch)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine() | {"threads": torch.get_num_threads(), "repeats": args.repeats, "images": args.images}
    print(json.dumps(info), flush=True)
    variants = list(dict.fromkeys([*args.variants, "default"]))  # the default always runs
    rows = [row for spec in args.models
            for row in measure(spec, args.batch_sizes, args.images, args.repeats, variants)]
    if args.out:
        args.out.write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    names = [name for name in VARIANTS if name in rows[0]["ms"]]
    print("\n| model | input | batch | " + " | ".join(f"{name} ms/image" for name in names)
          + " | default ÷ nchw (speed) | max abs Δ |")
    print("|---|---|---:|" + "---:|" * len(names) + "---:|---:|")
    for row in rows:
        cells = " | ".join(str(row["ms"][name]) for name in names)
        print(f"| {row['model']} | {row['size']} | {row['batch']} | {cells} | **{row['speedup']['default']}×** "
              f"| {row['max_abs_difference']:.1e} |")


if __name__ == "__main__":
    main()
