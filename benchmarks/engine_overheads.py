"""Batch-1 extraction, every millisecond accounted: where ``extract_to_store`` spends its time per image with torch
and with onnxruntime, and the whole pipeline with the previous recipe against the current one, side by side.

Part 1 (``--account``): the library's own functions wrapped with timers (exclusive wall and main-thread CPU ms per
image: model, JPEG decode, EXIF/RGB/resize, tensor, batching loop, store writes, fingerprint, store creation …),
one ``extract_to_store`` of ``--count`` Gardens Point frames per engine, plus the models and ``load_image`` alone.
Part 2: images/s of ``extract_to_store`` (decode → resize → model → store, ``workers=0``, batch 1) for each
engine × recipe, alternating, best of ``--repeats``. "before" puts the recipe of 7123e49 back: rows synced in the
extracting thread, a DataLoader per call, ``model.to`` at every call, the fingerprint and the store writes through
bytes copies, a new store's arrays msynced, the input multiplied by a unit ``value_scale`` (torch; the export is
the current one in both).

    python benchmarks/engine_overheads.py [--pool netvlad] [--counts 16 200] [--repeats 3] [--account]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import ImageFile

from netvlad.data import images as images_module
from netvlad.data.images import ImageDataset, ImageLoader, collate_by_size
from netvlad.data.readers.common import list_images
from netvlad.extract import descriptors as extract_module
from netvlad.extract import engine as engine_module
from netvlad.extract import row_buffer as row_buffer_module
from netvlad.extract import store as store_module
from netvlad.extract import store_check
from netvlad.extract.engine import EngineConfig, make_runner
from netvlad.models import ModelConfig, PlaceModel, Preprocessing

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "gardens_point" / "day_left"


def previous_fingerprint(self) -> str:
    digest = hashlib.sha256(self.config.to_json().encode())
    for name, tensor in sorted(self.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def previous_write_rows(path, offset, rows, values) -> None:
    """``write_rows`` of 7123e49: a sorted copy and a bytes copy of the rows before each ``pwrite``."""
    order = np.argsort(rows, kind="stable")
    rows, values = np.asarray(rows, dtype=np.int64)[order], np.ascontiguousarray(values[order])
    starts = np.flatnonzero(np.diff(rows, prepend=rows[0] - 2) != 1)
    fd = os.open(path, os.O_WRONLY)
    try:
        for begin, end in zip(starts, [*starts[1:], len(rows)], strict=True):
            os.pwrite(fd, values[begin:end].tobytes(), offset + int(rows[begin]) * values[0].nbytes)
        store_check._sync(fd)
    finally:
        os.close(fd)


def previous_loader(model, paths, batch_size, workers, device):
    pre = model.config.preprocessing
    return ImageLoader(ImageDataset(paths, pre.resize, pre.size, skip_bad=True), batch_size=batch_size,
                       num_workers=workers, collate_fn=collate_by_size, pin_memory=False, persistent_workers=False)


def previous_normalize(self, images):
    return (images * self.config.preprocessing.value_scale - self.mean) / self.std


def previous_open_memmap(open_memmap):
    """``open_memmap`` whose new arrays are msynced, as a new store's were."""
    def flushed(*args, **kwargs):
        array = open_memmap(*args, **kwargs)
        if kwargs.get("mode") == "w+":
            array.flush()
        return array
    return flushed


@contextlib.contextmanager
def recipe(name: str):
    """Inside: the library as it was at 7123e49 (``"before"``) or as it is (``"now"``)."""
    if name == "now":
        yield
        return
    saved = [(PlaceModel, "fingerprint"), (PlaceModel, "normalize"), (store_module, "write_rows"),
             (extract_module, "_loader"), (extract_module, "_on_device"), (extract_module, "RowBuffer"),
             (np.lib.format, "open_memmap")]
    values = [getattr(owner, attr) for owner, attr in saved]
    np.lib.format.open_memmap = previous_open_memmap(np.lib.format.open_memmap)
    PlaceModel.fingerprint, PlaceModel.normalize = previous_fingerprint, previous_normalize
    store_module.write_rows, extract_module._loader = previous_write_rows, previous_loader
    extract_module._on_device = lambda model, device: model.to(device).eval()
    extract_module.RowBuffer = lambda store, **kw: row_buffer_module.RowBuffer(store, **(kw | {"background": False}))
    try:
        yield
    finally:
        for (owner, attr), value in zip(saved, values, strict=True):
            setattr(owner, attr, value)


def rate(model, names, runner, tmp: Path) -> tuple[float, float]:
    """(images/s, main-thread CPU share of the process CPU) of one ``extract_to_store`` at batch 1, warmed up."""
    extract_module.extract_to_store(model, IMAGES, names[:1], tmp / f"w{time.monotonic_ns()}", batch_size=1,
                                    engine=runner)
    start, thread, process = time.perf_counter(), time.thread_time(), time.process_time()
    extract_module.extract_to_store(model, IMAGES, names, tmp / f"s{time.monotonic_ns()}", batch_size=1,
                                    engine=runner)
    seconds = time.perf_counter() - start
    return len(names) / seconds, (time.thread_time() - thread) / max(time.process_time() - process, 1e-9)


STAGES = [(PlaceModel, "fingerprint", "fingerprint (per call)"), (store_module.DescriptorStore, "create",
          "store create/open (per call)"), (extract_module, "_on_device", "model to device, eval (per call)"),
          (store_module, "write_rows", "store: pwrite + fdatasync"),
          (store_module, "row_checksums", "store: checksums"),
          (row_buffer_module.RowBuffer, "_write", "RowBuffer (concatenate, wait for the helper)"),
          (row_buffer_module.RowBuffer, "add", "RowBuffer.add"), (ImageFile.ImageFile, "load", "JPEG decode (draft)"),
          (images_module, "decode_image", "EXIF + RGB + resize"), (images_module, "image_to_tensor", "uint8 → float"),
          (images_module, "load_image", "open file, header, draft"), (extract_module, "collate_by_size", "batching"),
          (engine_module.OrtRunner, "__call__", "model: onnxruntime"),
          (engine_module.TorchRunner, "__call__", "model: torch"),
          (extract_module, "_extract_rows", "the loop itself (iteration, indices, callbacks)"),
          (extract_module, "extract_to_store", "extract_to_store's own")]


@contextlib.contextmanager
def timers(totals: dict):
    """Wrap each stage: ``totals[label] = [exclusive wall s, exclusive main-thread CPU s, calls]``."""
    stack, saved = [], []

    main = threading.get_ident()

    def wrap(function, label):
        def timed(*args, **kwargs):
            if threading.get_ident() != main:  # the helper thread's writes: not the extracting thread's time
                return function(*args, **kwargs)
            wall, cpu = time.perf_counter(), time.thread_time()
            stack.append([0.0, 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                inner_wall, inner_cpu = stack.pop()
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                entry = totals[label]
                entry[0], entry[1], entry[2] = entry[0] + wall - inner_wall, entry[1] + cpu - inner_cpu, entry[2] + 1
                if stack:
                    stack[-1][0] += wall
                    stack[-1][1] += cpu
        return timed

    for owner, attr, label in STAGES:
        raw = owner.__dict__[attr] if isinstance(owner, type) and attr in owner.__dict__ else getattr(owner, attr)
        saved.append((owner, attr, raw))  # restored as it was (a classmethod stays one)
        setattr(owner, attr, wrap(getattr(owner, attr), label))
    try:
        yield
    finally:
        for owner, attr, function in reversed(saved):
            setattr(owner, attr, function)


def account(model, names, runners, tmp: Path) -> dict:
    """Exclusive ms per image of each stage, per engine (one timed ``extract_to_store`` each, after a warm-up)."""
    out = {}
    for name, runner in runners.items():
        rate(model, names[:2], runner, tmp)
        totals: dict = defaultdict(lambda: [0.0, 0.0, 0])
        with timers(totals):
            start = time.perf_counter()
            extract_module.extract_to_store(model, IMAGES, names, tmp / f"a{time.monotonic_ns()}", batch_size=1,
                                            engine=runner)
            whole = time.perf_counter() - start
        per = {label: [round(w / len(names) * 1e3, 3), round(c / len(names) * 1e3, 3), n]
               for label, (w, c, n) in sorted(totals.items(), key=lambda item: -item[1][0])}
        per["unaccounted (wall)"] = [round((whole - sum(w for w, _, _ in totals.values())) / len(names) * 1e3, 3)]
        out[name] = {"total_ms": round(whole / len(names) * 1e3, 3), "stages": per}
        print(json.dumps({"account": name, "count": len(names)} | out[name]), flush=True)
    return out


def alone(model, names, runners) -> dict:
    """ms per image of each model on ready batches, and of ``load_image``, best of 3."""
    batches = [images_module.load_image(IMAGES / n, "fixed", model.config.preprocessing.size)[None] for n in names]

    def best(work) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        return round(min(times) / len(names) * 1e3, 3)

    out = {f"model alone: {name}": best(lambda r=runner: [r(b) for b in batches]) for name, runner in runners.items()}
    size = model.config.preprocessing.size
    out["load_image alone"] = best(lambda: [images_module.load_image(IMAGES / n, "fixed", size) for n in names])
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default="netvlad")
    parser.add_argument("--counts", type=int, nargs="+", default=[16, 200])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--account", action="store_true", help="also the per-stage accounting (first count)")
    parser.add_argument("--account-recipe", choices=["now", "before"], default="now", help="the recipe accounted")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool=args.pool, num_clusters=64,
                                   preprocessing=Preprocessing("fixed", (240, 320))), pretrained=True).eval()
    names = list_images(IMAGES)
    report: dict = {"model": f"mobilenet_v2 + {args.pool}", "size": "240×320", "threads": 1, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        runners = {"torch": make_runner(model, "torch"),
                   "onnxruntime": make_runner(model, EngineConfig("onnxruntime", 1, Path(tmp) / "cache"))}
        if args.account:
            report["alone"] = alone(model, names[:16], runners)
            with recipe(args.account_recipe):
                report["account"] = account(model, names[:args.counts[0]], runners, Path(tmp))
        for count in args.counts if args.repeats else []:
            best: dict = {}
            for _ in range(args.repeats):
                for name in ("before", "now"):
                    for engine, runner in runners.items():
                        with recipe(name):
                            got, share = rate(model, names[:count], runner, Path(tmp))
                        if got > best.get((name, engine), (0.0,))[0]:
                            best[name, engine] = (got, share)
            for name in ("before", "now"):
                (torch_ips, torch_share), (ort_ips, ort_share) = best[name, "torch"], best[name, "onnxruntime"]
                row = {"count": count, "recipe": name, "torch_ips": round(torch_ips, 2), "ort_ips": round(ort_ips, 2),
                       "ratio": round(ort_ips / torch_ips, 3),
                       "main_thread_cpu_share": [round(torch_share, 3), round(ort_share, 3)]}
                report["rows"].append(row)
                print(json.dumps(row), flush=True)
    print("\n| images per call | recipe | torch img/s | onnxruntime img/s | ORT ÷ torch |\n|---|---|---|---|---|")
    for r in report["rows"]:
        print(f"| {r['count']} | {r['recipe']} | {r['torch_ips']} | {r['ort_ips']} | {r['ratio']}× |")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
