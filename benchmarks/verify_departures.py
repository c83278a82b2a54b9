"""Where the re-ranking departs from Patch-NetVLAD's code, each departure's measured effect, side by side in one run.

The model, patch whitening and Gardens Point subset of ``python -m benchmarks verify`` (MobileNetV2 + NetVLAD K = 16,
k-means on day_left, 4096-D patch whitening; every ``--every``-th frame of each side at ``--longest`` px). Per
query, each patch size's raw scores are computed once per RANSAC threshold setting; the rankings below differ in
one choice at a time from the reference's (Patch-NetVLAD: 1.5-cell RANSAC threshold for every size, z-score
fusion of the sizes over the shortlist, the patch score alone). The patch sums: the largest difference of patch
descriptors (size 5, no projection) from their direct float64 window sums, for this library's float64 integral
images and for a float32 integral image as Patch-NetVLAD builds it.

    OMP_NUM_THREADS=1 python -m benchmarks verify-departures [--every 4] [--longest 480] [--top 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import add_results_option, work_dir
from benchmarks.verify import features, model_and_whitening, patch_store, resized, sets
from netvlad.eval.recall import recall_at_n
from netvlad.match.verify import get_preset
from netvlad.match.verify.patches import SHRINK, PatchExtractor, shrink_whitening
from netvlad.match.verify.rerank import normalise, size_scores
from netvlad.nn import functional as VF
from netvlad.nn.patch import patch_netvlad, window_grid, window_sums
from netvlad.numerics import describe, numeric_environment


def zscore(scores: torch.Tensor) -> torch.Tensor:
    """Patch-NetVLAD's normalise_func per size: (s − mean) / std over the shortlist (all equal: zeros)."""
    std = scores.std(unbiased=False)
    return (scores - scores.mean()) / std if std > 0 else torch.zeros_like(scores)


def patch_sum_errors(model, feature_map: torch.Tensor, size: int = 5) -> tuple[float, float]:
    """(this library's, a float32 integral image's) largest difference from direct float64 window sums."""
    layer = model.pool
    weight = layer.conv.weight.view(layer.num_clusters, layer.dim)
    with torch.no_grad():
        ours = patch_netvlad(feature_map, weight, layer.conv.bias, layer.centroids, size)[0].double()
        x = VF.l2_normalize(feature_map.double(), dim=1)[0]
        a = torch.softmax(torch.einsum("kd,dhw->khw", weight.double(), x)
                          + (0 if layer.conv.bias is None else layer.conv.bias.double()[:, None, None]), 0)
        rows, cols = window_grid(x.shape[1], x.shape[2], size, 1)
        direct = torch.zeros_like(ours)
        for r in range(rows):
            for c in range(cols):
                xs, aw = x[:, r:r + size, c:c + size].flatten(1), a[:, r:r + size, c:c + size].flatten(1)
                v = aw @ xs.T - aw.sum(1, keepdim=True) * layer.centroids.double()
                direct[r * cols + c] = VF.l2_normalize(VF.l2_normalize(v, dim=1).flatten(), dim=0)
        residual = (a[:, None] * x[None]).float()  # float32 tables, as Patch-NetVLAD's integral feature
        table = torch.zeros(*residual.shape[:2], residual.shape[2] + 1, residual.shape[3] + 1)
        table[..., 1:, 1:] = residual.cumsum(-1).cumsum(-2)
        mass = torch.zeros(a.shape[0], a.shape[1] + 1, a.shape[2] + 1)
        mass[:, 1:, 1:] = a.float().cumsum(-1).cumsum(-2)
        v32 = window_sums(table, size, 1) - window_sums(mass, size, 1)[:, None] * layer.centroids[:, :, None, None]
        v32 = VF.l2_normalize(v32.flatten(2).permute(2, 0, 1).double(), dim=2).flatten(1)
        v32 = VF.l2_normalize(v32, dim=1)
    return float((ours - direct).abs().max()), float((v32 - direct).abs().max())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--longest", type=int, default=480)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=work_dir("verify"),
                        help="model, clusters, whitening and patch stores, reused by later runs")
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options."""
    args.cache.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model, whitening = model_and_whitening(args.cache)
    label, (db, queries, positives, preprocessing) = next(iter(sets(None, args.every, args.longest).items()))
    model = resized(model, preprocessing)
    db_maps, q_maps = features(model, db), features(model, queries)
    with torch.no_grad():
        g_db = torch.cat([model.pool_features(f) for f in db_maps]).numpy()
        g_q = torch.cat([model.pool_features(f) for f in q_maps]).numpy()
    dist = np.linalg.norm(g_q[:, None] - g_db[None], axis=2)
    ranked = np.argsort(dist, axis=1, kind="stable")[:, :args.top]
    rows = {"global NetVLAD": recall_at_n(ranked, positives, (1, 5))}
    for name in ("performance", "speed"):
        preset = get_preset(name)
        extractor = PatchExtractor(model, preset, shrink_whitening(whitening.crop(preset.dim), SHRINK))
        store, _ = patch_store(extractor, db_maps, args.cache / f"departures_{name}_{args.longest}_{args.every}")
        settings = {"1.5 cells": preset} if preset.scorer != "ransac" else {
            "1.5 cells": preset, "1.0 / 1.5 / 2.0 cells": preset.with_thresholds((1.0, 1.5, 2.0))}
        variants: dict[str, np.ndarray] = {}
        for q, query_map in enumerate(q_maps):
            query = extractor.from_features(query_map)[0]
            similarity = normalise(-torch.as_tensor(dist[q, ranked[q]], dtype=torch.float64))
            for threshold, chosen in settings.items():
                raw = [size_scores(query.descriptors[i].float(), query.grids[i],
                                   lambda r, i=i, s=store: s.read(i, r), ranked[q], chosen, i,
                                   torch.Generator().manual_seed(q))[0] for i in range(len(chosen.sizes))]
                for fusion, norm in (("min-max", normalise), ("z-score", zscore)):
                    patch = sum(w * norm(s) for w, s in zip(chosen.weights, raw, strict=True))
                    for lam in (0.0, preset.global_weight):
                        key = f"{name}: RANSAC {threshold}, {fusion}, λ = {lam}" if chosen.scorer == "ransac" \
                            else f"{name}: {fusion}, λ = {lam}"
                        score = (1 - lam) * (normalise(patch) if fusion == "z-score" and lam else patch) \
                            + lam * similarity
                        variants.setdefault(key, np.zeros_like(ranked))[q] = ranked[q][
                            np.argsort(-score.numpy(), kind="stable")]
        for key, ranking in variants.items():
            rows[key] = recall_at_n(ranking, positives, (1, 5))
    ours, float32 = patch_sum_errors(model, db_maps[0])
    lines = [f"{label}: {len(queries)} queries, {len(db)} database images, top {args.top} re-ranked", "",
             "| ranking | R@1 | R@5 |", "|---|---:|---:|"]
    lines += [f"| {key} | {recall[1]:.1f} | {recall[5]:.1f} |" for key, recall in rows.items()]
    lines.append(f"\npatch descriptors (size 5, {tuple(db_maps[0].shape[2:])} map), largest difference from direct "
                 f"float64 window sums: float64 integral images {ours:.2g}, float32 integral image {float32:.2g}")
    lines.append(f"\n{describe(numeric_environment())}")
    return "\n".join(lines)
