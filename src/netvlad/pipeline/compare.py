"""Evaluate several models on one test set, sharing the frozen backbone stages' features when they agree."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from netvlad.data.dataset import GeoDataset
from netvlad.eval import EvalResult, evaluate_descriptors
from netvlad.extract.engine import LIBRARY_ENGINE, Engine, make_runner
from netvlad.models import PlaceModel
from netvlad.places.localise import POSITION_ESTIMATORS
from netvlad.train.cache import ExtractOptions, extract
from netvlad.train.distributed import DistInfo
from netvlad.train.frozen import FrozenFeatures, compute_frozen

logger = logging.getLogger(__name__)


def same_frozen_stages(a: PlaceModel, b: PlaceModel) -> bool:
    """True when ``a`` and ``b`` share input handling, ``train_from`` and every frozen-stage tensor."""
    if a.config.preprocessing != b.config.preprocessing or a.backbone.train_from != b.backbone.train_from:
        return False
    if a.config.backbone != b.config.backbone:
        return False
    sa, sb = (m.backbone.stages[: m.backbone.train_from].state_dict() for m in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def compare_models(models: Mapping[str, PlaceModel], dataset: GeoDataset, radius: float, ns: tuple[int, ...],
                   batch_size: int = 16, workers: int = 0, device: torch.device | str = "cpu",
                   progress: bool = False, engine: Engine = LIBRARY_ENGINE) -> dict[str, EvalResult]:
    """Recall@N of every model on ``dataset`` (label -> result); with torch (and auto), frozen-stage features are
    computed once and shared; through onnxruntime each model runs whole (its export checked and cached once)."""
    paths = dataset.database.paths() + dataset.queries.paths()
    if getattr(engine, "name", engine) == "auto":  # shared frozen features: 2–3× faster (docs/engine.md)
        engine = "torch"
    first = next(iter(models.values())).to(device)
    frozen: FrozenFeatures | None = None
    positives = dataset.positives(radius)
    results = {}
    for label, model in models.items():
        model = model.to(device).eval()
        runner = make_runner(model, engine, device, images=len(paths))
        if runner.name == "torch" and frozen is None:
            frozen = compute_frozen(first, paths, DistInfo(), batch_size, workers, device, progress)
        shared = frozen if runner.name == "torch" and frozen is not None and same_frozen_stages(first, model) else None
        options = ExtractOptions(batch_size=batch_size, workers=workers, device=device, progress=progress,
                                 frozen=shared, engine=runner)
        descriptors = extract(model, paths, options, desc=label)
        db, q = descriptors[: len(dataset.database)], descriptors[len(dataset.database):]
        results[label] = evaluate_descriptors(db, q, positives, ns, k=max(ns))
        logger.info("%-26s %s", label, "  ".join(f"R@{n} {r:5.1f}" for n, r in results[label].recall.items()))
    return results


@dataclass(frozen=True)
class Localisation:
    """One query's estimated and recorded UTM position (metres) and the error between them."""

    query: str
    estimate: tuple[float, float]
    truth: tuple[float, float]
    error: float  # metres
    correct: bool  # the top-1 match is a positive


def localise_queries(result: EvalResult, dataset: GeoDataset, count: int, k: int = 5, method: str = "top1",
                     seed: int = 0) -> list[Localisation]:
    """Position estimates of ``count`` sampled test queries from their top-``k`` retrievals."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(result.num_queries, min(count, result.num_queries), replace=False))
    estimator = POSITION_ESTIMATORS[method]
    out = []
    for q in chosen:
        ranked = result.ranked[q, :k]
        estimate = estimator(dataset.database.utm[ranked], result.distances[q, :k])
        truth = dataset.queries.utm[q]
        out.append(Localisation(dataset.queries.names[q], (float(estimate[0]), float(estimate[1])),
                                (float(truth[0]), float(truth[1])), float(np.linalg.norm(estimate - truth)),
                                bool(result.correct[q, 0])))
    return out
