"""Where batch-1 extraction spends its time, per stage, with torch and with onnxruntime, side by side in one run.

Stages, milliseconds per image (best of ``--repeats`` passes over the same ``--count`` photos): JPEG decode (at
reduced DCT scale, ``Image.draft``), EXIF/RGB/resize, uint8 → float tensor, batching, the model through each
engine (normalisation is inside the model and its export), and the store write (synced at every batch, as before,
or grouped by :class:`~netvlad.extract.row_buffer.RowBuffer`). Then the whole pipeline (decode → resize → model →
store, ``workers=0``) in images/s for each engine with the previous recipe (a copy at every decoding step, three
syncs per batch) and the current one, alternating. ``--draft-check`` also measures what the reduced-scale decode
changes: descriptors and Recall@N on Gardens Point day_left → day_right (±2 frames) with and without it.

    python benchmarks/engine_stages.py [--count 32] [--repeats 3] [--pool netvlad] [--height 240 --width 320]
                                       [--batch-sizes 1 16] [--draft-check] [--out stages.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from netvlad.data import images as images_module
from netvlad.data.images import collate_by_size, decode_image, draft_for_resize, image_to_tensor, resize_image
from netvlad.data.readers.common import list_images
from netvlad.extract import descriptors as extract_module
from netvlad.extract.descriptors import extract_to_store
from netvlad.extract.engine import EngineConfig, make_runner
from netvlad.extract.row_buffer import RowBuffer
from netvlad.extract.store import DescriptorStore
from netvlad.models import ModelConfig, PlaceModel, Preprocessing

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gardens_point"


def best_ms(work, count: int, repeats: int) -> float:
    """Milliseconds per image of ``work()`` (one pass over ``count`` images), best of ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return round(best / count * 1000, 3)


def previous_load(path, resize="none", size=()):
    """load_image as it was: EXIF transpose and RGB convert copy even an upright RGB photo, asarray copies again."""
    with Image.open(path) as image:
        draft_for_resize(image, resize, size)
        image.load()
        image = images_module.to_rgb(ImageOps.exif_transpose(image) or image)
        array = np.asarray(resize_image(image, resize, size), dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def stages(model, paths, runners, repeats: int, tmp: Path) -> dict:
    """Per-stage ms per image at batch 1."""
    size, count = model.config.preprocessing.size, len(paths)

    def opened(draft: bool):
        out = []
        for path in paths:
            image = Image.open(path)
            if draft:
                draft_for_resize(image, "fixed", size)
            image.load()
            out.append(image)
        return out

    result = {"decode full-size JPEG": best_ms(lambda: opened(False), count, repeats),
              "decode JPEG, reduced DCT scale (draft)": best_ms(lambda: opened(True), count, repeats)}
    loaded = opened(True)
    result["EXIF + RGB + resize (before: two copies)"] = best_ms(
        lambda: [resize_image(images_module.to_rgb(ImageOps.exif_transpose(i)), "fixed", size) for i in loaded],
        count, repeats)
    result["EXIF + RGB + resize (now)"] = best_ms(lambda: [decode_image(i, "fixed", size) for i in loaded], count,
                                                  repeats)
    resized = [decode_image(i, "fixed", size) for i in loaded]
    result["to float tensor (before)"] = best_ms(
        lambda: [torch.from_numpy(np.asarray(i, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
                 for i in resized], count, repeats)
    result["to float tensor (now)"] = best_ms(lambda: [image_to_tensor(i) for i in resized], count, repeats)
    tensors = [(k, image_to_tensor(i)) for k, i in enumerate(resized)]
    result["batch (collate)"] = best_ms(lambda: [collate_by_size([t]) for t in tensors], count, repeats)
    batches = [collate_by_size([t])[0][0][1] for t in tensors]
    for name, runner in runners.items():
        result[f"model: {name}"] = best_ms(lambda r=runner: [r(b) for b in batches], count, repeats)
    channels_last = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        result["model: torch, channels_last (not used)"] = best_ms(
            lambda: [channels_last(b.contiguous(memory_format=torch.channels_last)) for b in batches], count, repeats)
    model.to(memory_format=torch.contiguous_format)
    result |= session_variants(next((tmp / "cache").glob("*.onnx")), batches[0], count, repeats)
    result |= store_stages(model, runners["torch"](batches[0]), count, repeats, tmp)
    return result


def store_stages(model, descriptor: np.ndarray, count: int, repeats: int, tmp: Path) -> dict:
    """The store write, ms per image: three synced writes per batch-1 row, or grouped (RowBuffer)."""
    out = {}
    for label, seconds in (("store write, synced per batch (before)", 0.0), ("store write, RowBuffer (now)", 1.0)):
        runs = []
        for repeat in range(repeats):
            store = DescriptorStore.create(tmp / f"store-{seconds}-{repeat}", [f"{i}" for i in range(count)],
                                           dim=descriptor.shape[1])
            start = time.perf_counter()
            with RowBuffer(store, seconds=seconds) as rows:
                for i in range(count):
                    rows.add(np.array([i]), descriptor)
            runs.append(time.perf_counter() - start)
        out[label] = round(min(runs) / count * 1000, 3)
    return out


def session_variants(onnx: Path, batch: torch.Tensor, count: int, repeats: int) -> dict:
    """ms per batch-1 call of the model's export under onnxruntime session settings other than the engine's."""
    import onnxruntime

    def session(**settings):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = 1, 1, 3
        for name, value in settings.items():
            if name == "entries":
                for key, entry in value:
                    options.add_session_config_entry(key, entry)
            else:
                setattr(options, name, value)
        return onnxruntime.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])

    extended = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    variants = {"as the engine runs it (ORT_ENABLE_ALL, arena, memory pattern)": session(),
                "enable_cpu_mem_arena=False": session(enable_cpu_mem_arena=False),
                "enable_mem_pattern=False": session(enable_mem_pattern=False),
                "execution_mode=ORT_PARALLEL": session(execution_mode=onnxruntime.ExecutionMode.ORT_PARALLEL),
                "allow_spinning=0": session(entries=[("session.intra_op.allow_spinning", "0")]),
                "graph_optimization_level=ORT_ENABLE_EXTENDED": session(graph_optimization_level=extended)}
    array = batch.numpy()
    calls = {name: (lambda s=s: s.run(None, {"images": array})) for name, s in variants.items()}
    plain = variants["as the engine runs it (ORT_ENABLE_ALL, arena, memory pattern)"]
    binding, out = plain.io_binding(), np.empty(plain.run(None, {"images": array})[0].shape, np.float32)

    def bound():  # IOBinding with a reused output buffer
        binding.bind_cpu_input("images", array)
        binding.bind_output(plain.get_outputs()[0].name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        plain.run_with_iobinding(binding)

    calls["IOBinding, output buffer reused"] = bound
    for call in calls.values():
        call()
    best = {name: float("inf") for name in calls}
    for _ in range(repeats):  # alternating, so a load spike hits every variant alike
        for name, call in calls.items():
            best[name] = min(best[name], best_ms(lambda c=call: [c() for _ in range(count)], count, 1))
    return {f"onnxruntime session: {name}": ms for name, ms in best.items()}


def pipeline(model, root: Path, names, batch: int, runner, tmp: Path, previous: bool) -> float:
    """Whole-pipeline images/s through ``extract_to_store``; ``previous``: the copies and per-batch syncs of before."""
    saved = images_module.load_image, extract_module.RowBuffer
    if previous:
        images_module.load_image = previous_load
        extract_module.RowBuffer = lambda store, **kw: RowBuffer(store, **(kw | {"seconds": 0.0, "background": False}))
    try:
        extract_to_store(model, root, names[:batch], tmp / f"warm-{time.monotonic_ns()}", batch_size=batch,
                         engine=runner)
        start = time.perf_counter()
        extract_to_store(model, root, names, tmp / f"run-{time.monotonic_ns()}", batch_size=batch, engine=runner)
        return len(names) / (time.perf_counter() - start)
    finally:
        images_module.load_image, extract_module.RowBuffer = saved


def whole(model, root, names, runners, args, tmp: Path) -> list[dict]:
    """images/s of each engine × recipe, alternating, best of ``--repeats``."""
    rows = []
    for batch in args.batch_sizes:
        best: dict = {}
        for _ in range(args.repeats):
            for recipe in ("before", "now"):
                for name, runner in runners.items():
                    rate = pipeline(model, root, names, batch, runner, tmp, recipe == "before")
                    best[recipe, name] = max(best.get((recipe, name), 0.0), rate)
        for recipe in ("before", "now"):
            torch_ips, ort_ips = best[recipe, "torch"], best[recipe, "onnxruntime"]
            rows.append({"batch": batch, "recipe": recipe, "torch_ips": round(torch_ips, 2),
                         "ort_ips": round(ort_ips, 2), "ratio": round(ort_ips / torch_ips, 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def draft_check(model, runner) -> dict:
    """Descriptors and Recall@N (±2 frames) of Gardens Point day_left → day_right, with and without draft."""
    from netvlad.eval.recall import recall_at_n
    from netvlad.extract.descriptors import extract_descriptors

    sides = {s: [DATA / s / n for n in list_images(DATA / s)] for s in ("day_left", "day_right")}
    out = {}
    saved = images_module.draft_for_resize
    for label, draft in (("draft", saved), ("full decode", lambda *a: None)):
        images_module.draft_for_resize = draft
        try:
            out[label] = {s: extract_descriptors(model, p, batch_size=16, engine=runner) for s, p in sides.items()}
        finally:
            images_module.draft_for_resize = saved
    result = {}
    for label, d in out.items():
        ranked = np.argsort(-(d["day_right"] @ d["day_left"].T), axis=1)[:, :20]
        positives = [np.arange(max(0, q - 2), min(len(d["day_left"]), q + 3)) for q in range(len(ranked))]
        result[label] = {f"R@{n}": round(v, 2) for n, v in recall_at_n(ranked, positives).items()}
        result[label]["top5"] = ranked[:, :5]
    a, b = out["draft"], out["full decode"]
    both = np.concatenate([a["day_left"], a["day_right"]]), np.concatenate([b["day_left"], b["day_right"]])
    cosine = np.sum(both[0] * both[1], axis=1)
    same = float(np.mean(np.all(result["draft"].pop("top5") == result["full decode"].pop("top5"), axis=1)))
    return result | {"max_abs_difference": float(np.abs(both[0] - both[1]).max()),
                     "min_cosine": float(cosine.min()), "same_top5_share": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DATA / "day_left")
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pool", default="netvlad")
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
    parser.add_argument("--draft-check", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = ModelConfig(backbone="mobilenet_v2", pool=args.pool, num_clusters=64,
                         preprocessing=Preprocessing("fixed", (args.height, args.width)))
    model = PlaceModel(config, pretrained=True).eval()
    names = list_images(args.images)[:args.count]
    with tempfile.TemporaryDirectory() as tmp:
        runners = {"torch": make_runner(model, "torch"),
                   "onnxruntime": make_runner(model, EngineConfig("onnxruntime", 1, Path(tmp) / "cache"))}
        report = {"model": f"mobilenet_v2 + {args.pool}", "size": [args.height, args.width], "threads": 1,
                  "stages_ms": stages(model, [args.images / n for n in names], runners, args.repeats, Path(tmp))}
        print(json.dumps(report), flush=True)
        report["pipeline"] = whole(model, args.images, names, runners, args, Path(tmp))
        if args.draft_check:
            report["draft_check"] = draft_check(model, runners["onnxruntime"])
            print(json.dumps({"draft_check": report["draft_check"]}), flush=True)
    print("\n| stage | ms per image |\n|---|---|")
    for stage, ms in report["stages_ms"].items():
        print(f"| {stage} | {ms} |")
    print("\n| batch | recipe | torch img/s | onnxruntime img/s | ORT ÷ torch |\n|---|---|---|---|---|")
    for r in report["pipeline"]:
        print(f"| {r['batch']} | {r['recipe']} | {r['torch_ips']} | {r['ort_ips']} | {r['ratio']}× |")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
