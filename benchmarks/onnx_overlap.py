"""onnxruntime end to end against its bare model: what decoding and resizing add per image, with and without the
extraction loop's prefetch thread, measured side by side in one run on real photographs.

For each thread count and batch size, three ways through the same onnxruntime session and the same Gardens Point
frames (``--images`` of day_left, resized to the model's fixed size):

- ``bare``: the session on images already decoded, resized and stacked (the model's own time);
- ``sequential``: ``extract_descriptors(..., prefetch=0)``: decode, resize, then run, one batch after the other;
- ``prefetch``: ``extract_descriptors(...)`` as the library runs it: a thread decodes the next batches while the
  model runs this one.

Each cell is the median over ``--repeats`` rounds (variants in rotating order) of wall milliseconds per image
(overlap only shows in wall time); ``÷ bare`` is end to end over bare (the target is ≤ 1.3). Both end-to-end
variants give the same descriptors bit for bit (checked).

    python benchmarks/onnx_overlap.py [--threads-list 1 2] [--batch-sizes 1 8] [--images 16] [--repeats 3]
                                      [--markdown docs/results/onnx-overlap.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from threads import pin_from_argv  # noqa: E402 - beside this script

pin_from_argv()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine import build, machine  # noqa: E402
from netvlad.data.images import load_image  # noqa: E402
from netvlad.extract.descriptors import extract_descriptors  # noqa: E402
from netvlad.extract.engine import EngineConfig, make_runner  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gardens_point" / "day_left"
SIZE = (240, 320)


def wall_ms(work, count: int) -> float:
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) / count * 1e3


def measure(paths: list[Path], threads: int, batch: int, repeats: int, cache: Path) -> dict:
    """One thread count and batch size: ms per image of bare, sequential and prefetch."""
    torch.set_num_threads(threads)
    model = build("mobilenet_v2", "gem", *SIZE)
    run = make_runner(model, EngineConfig("onnxruntime", threads=threads, cache=cache))
    images = torch.stack([load_image(path, "fixed", SIZE) for path in paths])
    variants = {
        "bare": lambda: [run(images[i:i + batch]) for i in range(0, len(images), batch)],
        "sequential": lambda: extract_descriptors(model, paths, batch_size=batch, engine=run, prefetch=0),
        "prefetch": lambda: extract_descriptors(model, paths, batch_size=batch, engine=run),
    }
    same = np.array_equal(variants["sequential"](), variants["prefetch"]())  # and the warm-up
    variants["bare"]()
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names[round_ % 3:] + names[:round_ % 3]:
            times[name].append(wall_ms(variants[name], len(paths)))
    ms = {name: round(statistics.median(values), 2) for name, values in times.items()}
    row = {"threads": threads, "batch": batch, "ms": ms, "same_descriptors": bool(same)}
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| threads | batch | bare (ms/image) | sequential | prefetch | sequential ÷ bare | prefetch ÷ bare |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        ms = row["ms"]
        lines.append(f"| {row['threads']} | {row['batch']} | {ms['bare']} | {ms['sequential']} | {ms['prefetch']} "
                     f"| {ms['sequential'] / ms['bare']:.2f} | **{ms['prefetch'] / ms['bare']:.2f}** |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads-list", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="numpy's BLAS threads")
    parser.add_argument("--markdown", type=Path, help="write the table as a Markdown fragment here")
    args = parser.parse_args()
    info = machine()
    print(json.dumps(info), flush=True)
    paths = sorted(DATA.glob("*.jpg"))[:args.images]
    with tempfile.TemporaryDirectory() as cache:
        rows = [measure(paths, threads, batch, args.repeats, Path(cache))
                for threads in args.threads_list for batch in args.batch_sizes]
    text = table(rows)
    print(text)
    if args.markdown:
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        first = (f"`python benchmarks/onnx_overlap.py {' '.join(sys.argv[1:])}` — {when}; CPU {info['cpu']} "
                 f"({', '.join(info['isa'])}), {' and '.join(map(str, args.threads_list))} threads, onnxruntime "
                 f"{info['onnxruntime']}, torch {info['torch']}, MobileNetV2 + GeM at {SIZE[0]}×{SIZE[1]}, "
                 f"{len(paths)} Gardens Point frames, median of {args.repeats} rounds.")
        args.markdown.write_text(first + "\n\nWall milliseconds per image:\n\n" + text + "\n")


if __name__ == "__main__":
    main()
