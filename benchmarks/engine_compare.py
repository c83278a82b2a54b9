"""Should ``--engine auto`` run a model comparison through onnxruntime? ``compare_models`` wall seconds with torch
(the frozen backbone stages' features computed once and shared by every model) against onnxruntime (each model
exported fresh — as the demo's newly trained models are — and run whole), side by side, best of ``--repeats``.

Five demo-like models on Gardens Point day_left / day_right (the first ``N/2`` frames of each, ±2 frames): ImageNet
MobileNetV2 with max, GeM, and three NetVLAD (K = 16) heads whose trainable stages differ slightly from
ImageNet's (as after training), the last with a 512-D whitening; every model at the demo's 120 × 160, 1 thread.

    python benchmarks/engine_compare.py [--images 100 400] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from netvlad.data.readers import open_dataset
from netvlad.extract import engine as engine_module
from netvlad.extract.engine import EngineConfig
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.nn import PCAWhitening
from netvlad.pipeline.compare import compare_models

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gardens_point"


def subset(dataset, count: int):
    """The first ``count / 2`` database and query frames."""
    def cut(images, k):
        arrays = {f: getattr(images, f)[:k] for f in ("times", "frames") if getattr(images, f) is not None}
        return dataclasses.replace(images, names=images.names[:k], utm=images.utm[:k], sequence=None, **arrays)
    return dataclasses.replace(dataset, database=cut(dataset.database, count // 2),
                               queries=cut(dataset.queries, count // 2))


def demo_like_models(size: tuple[int, int]) -> dict[str, PlaceModel]:
    """f_max, GeM and three 'trained' NetVLAD models sharing ImageNet's frozen stages."""
    pre = Preprocessing(resize="fixed", size=size)
    models = {pool: PlaceModel(ModelConfig(backbone="mobilenet_v2", pool=pool, preprocessing=pre)).eval()
              for pool in ("max", "gem")}
    for i, whitening in enumerate((None, None, 512)):
        model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=16, preprocessing=pre))
        with torch.no_grad():
            for parameter in model.backbone.stages[model.backbone.train_from:].parameters():
                parameter.add_(torch.randn_like(parameter) * 1e-3)
            if whitening:
                model.set_whitening(PCAWhitening(model.pool.output_dim, whitening).fit(
                    torch.randn(600, model.pool.output_dim)))
        models[f"netvlad {i}"] = model.eval()
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[100, 400], help="database + query frames")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    dataset = open_dataset(DATA, database="day_left", queries="day_right", frame_tolerance=2)
    models = demo_like_models((120, 160))
    for count in args.images:
        data, best = subset(dataset, count), {}
        for _ in range(args.repeats):
            for engine in ("torch", "onnxruntime"):
                engine_module._SESSIONS.clear()
                with tempfile.TemporaryDirectory() as cache:  # fresh exports every time
                    config = engine if engine == "torch" else EngineConfig("onnxruntime", 1, Path(cache))
                    start = time.perf_counter()
                    compare_models(models, data, 25.0, (1, 5), batch_size=16, engine=config)
                    best[engine] = min(best.get(engine, float("inf")), time.perf_counter() - start)
        print(json.dumps({"images": count, "models": len(models), "torch_s": round(best["torch"], 2),
                          "onnxruntime_s": round(best["onnxruntime"], 2),
                          "ort_speedup": round(best["torch"] / best["onnxruntime"], 2)}), flush=True)


if __name__ == "__main__":
    main()
