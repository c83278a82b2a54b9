"""Full JPEG decode (the default, as the reference pipelines) against ``--fast-decode`` (libjpeg's reduced-scale
decode before the same resize), side by side in one run: decode + resize time per image, the largest pixel
difference, and the largest descriptor difference of the off-the-shelf model (ImageNet MobileNetV2 + NetVLAD,
K = 64, its deterministic initial centroids) on the same frames. Prints a Markdown table and the machine line.

    OMP_NUM_THREADS=1 python benchmarks/decode.py [--data ../shared/data] [--count 40] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from netvlad.data.images import load_image
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.numerics import describe, numeric_environment

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# (label, images under the data folder, resize, size)
CASES = [("Gardens Point 960×540, longest 640 (off-the-shelf default)", "gardens_point/day_left", "longest", (640,)),
         ("Gardens Point 960×540, fixed 480×640 (Patch-NetVLAD)", "gardens_point/day_left", "fixed", (480, 640)),
         ("Gardens Point 960×540, fixed 240×320", "gardens_point/day_left", "fixed", (240, 320)),
         ("Gardens Point 960×540, longest 240", "gardens_point/day_left", "longest", (240,)),
         ("Tokyo query 3264×2448 (progressive JPEG), longest 640", "tokyo_pair/tokyo_query.jpg", "longest", (640,))]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--count", type=int, default=40, help="frames per folder (every 200/count-th)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for label, where, resize, size in CASES:
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
    print("| images, input size | frames | full decode ms/image | fast ms/image | speed-up | largest pixel "
          "difference | largest descriptor difference | lowest cosine |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\n{describe(numeric_environment())}")


if __name__ == "__main__":
    main()
