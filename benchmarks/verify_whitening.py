"""Why re-ranking can cost Recall@1: the patch whitening, score normalisation, shortlist and λ swept on Gardens Point.

Gardens Point day_left → day_right (200 / 200, ±2 frames), MobileNetV2 ImageNet at 640 px, off-the-shelf NetVLAD
k-means initialised as ``netvlad evaluate`` does (K = 64: 500 database images sampled, i.e. all 200) or as
the ``verify`` benchmark does (K = 16). Feature maps, models, fitted PCA bases and each image's size-5 patch vectors
projected onto the leading 512 principal directions are cached in ``--cache``; every variant (whitening, plain PCA,
shrunk whitening, dims, min-max or z-score normalisation, top N, λ) is then a rescaling of the cached projections
and a rapid-scored re-ranking by the library's own ``size_scores``.

    python -m benchmarks verify-whitening --cache /tmp/i19/diag [--clusters 64] [--samples 5000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import ENV, SHARED_DATA, add_results_option, work_dir
from netvlad.eval.recall import recall_at_n
from netvlad.extract.clusters import ClusterConfig, cluster_if_off_the_shelf
from netvlad.match.verify import get_preset
from netvlad.match.verify.patches import iter_images
from netvlad.match.verify.rerank import size_scores
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.nn import PCAWhitening
from netvlad.nn.patch import patch_netvlad, window_grid

BASIS = 512  # principal directions kept in the cache (the speed preset's dims)


def paths(name: str) -> tuple[list[Path], list[Path], list[np.ndarray], Preprocessing | None]:
    """(database, queries, positives, preprocessing) of Gardens Point day_left → day_right (±2 frames) or of the
    100 Nordland summer → winter places of ``python -m benchmarks verify`` (thumbnails upscaled to 640×320)."""
    if name == "gardens":
        gp = SHARED_DATA / "gardens_point"
        left, right = sorted((gp / "day_left").glob("*.jpg")), sorted((gp / "day_right").glob("*.jpg"))
        return left, right, [np.arange(max(0, i - 2), min(len(left), i + 3)) for i in range(len(right))], None
    names = [f"images-{i:05d}.png" for i in range(16010, 24001, 80)]
    nord = SHARED_DATA / "nordland"
    return ([nord / "summer" / n for n in names], [nord / "winter" / n for n in names],
            [np.array([i]) for i in range(len(names))], Preprocessing("fixed", (320, 640)))


def model_for(clusters: int, cache: Path, left: list[Path]) -> PlaceModel:
    """The off-the-shelf model: K = 64 clustered as the command line does, K = 16 as the ``verify`` benchmark does."""
    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=clusters,
                                   preprocessing=Preprocessing("longest", (640,))), pretrained=True).eval()
    state = cache / f"model_{clusters}.pt"
    if state.is_file():
        model.load_state_dict(torch.load(state, weights_only=True))
        return model
    config = ClusterConfig(num_images=500) if clusters == 64 else ClusterConfig(num_images=100, niter=25)
    cluster_if_off_the_shelf(model, left, config, batch_size=8)
    torch.save(model.state_dict(), state)
    return model


@torch.no_grad()
def feature_maps(model: PlaceModel, images: list[Path], cache: Path, name: str) -> torch.Tensor:
    """Backbone maps ``(N, D, h, w)`` of equally sized images (cached)."""
    path = cache / f"maps_{name}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    out = [None] * len(images)
    for indices, batch in iter_images(model, images, batch_size=4):
        for i, f in zip(indices, model.features(batch).float(), strict=True):
            out[i] = f
    maps = torch.stack(out)
    torch.save(maps, path)
    return maps


def layer_args(model: PlaceModel):
    layer = model.pool
    return (layer.conv.weight.view(layer.num_clusters, layer.dim), layer.conv.bias, layer.centroids)


@torch.no_grad()
def fit_basis(model: PlaceModel, maps: torch.Tensor, samples: int, seed: int = 0) -> PCAWhitening:
    """PCA of ``samples`` random size-5 patch vectors of every 2nd database map (as the command line samples)."""
    rng = np.random.default_rng(seed)
    fit_maps = maps[::2][:100]
    per_image = -(-samples // len(fit_maps))
    chosen = []
    for m in fit_maps:
        v = patch_netvlad(m[None], *layer_args(model), 5, 1, model.pool.normalize_input)[0]
        chosen.append(v[torch.from_numpy(rng.choice(len(v), min(per_image, len(v)), replace=False))])
    data = torch.cat(chosen)[:samples]
    del chosen
    return lean_fit(data, BASIS)


def lean_fit(x: torch.Tensor, dim: int, chunk: int = 4096) -> PCAWhitening:
    """:meth:`PCAWhitening.fit`'s maths (dual Gram route, float64 by column chunks) without a float64 copy of ``x``."""
    n, d = x.shape
    mu = torch.cat([x[:, j:j + chunk].to(torch.float64).mean(0) for j in range(0, d, chunk)])

    def block(j):
        return x[:, j:j + chunk].to(torch.float64) - mu[j:j + chunk]

    gram = sum(block(j) @ block(j).T for j in range(0, d, chunk))
    lam, vec = torch.linalg.eigh(gram)
    lam, vec = lam.flip(0)[:dim], vec.flip(1)[:, :dim]
    u = torch.cat([block(j).T @ vec for j in range(0, d, chunk)]) / lam.clamp_min(1e-300).sqrt()
    lam = (lam / (n - 1)).clamp_min(0)
    white = PCAWhitening(d, dim)
    weight = u.T / (lam + white.eps).sqrt()[:, None]
    white.linear.weight.data.copy_(weight)
    white.linear.bias.data.copy_(-(weight @ mu))
    white.eigenvalues.copy_(lam)
    return white


@torch.no_grad()
def projections(model: PlaceModel, basis: PCAWhitening, maps: torch.Tensor) -> torch.Tensor:
    """Unit-norm PCA coordinates ``(N, windows, BASIS)`` (no whitening) of each map's size-5 patches."""
    scale = (basis.eigenvalues + basis.eps).sqrt()[:, None]
    projection = (basis.linear.weight * scale, basis.linear.bias * scale[:, 0])
    return torch.cat([patch_netvlad(m[None], *layer_args(model), 5, 1, model.pool.normalize_input, projection)
                      for m in maps])


def cached(path: Path, make):
    if path.is_file():
        return torch.load(path, weights_only=True)
    value = make()
    torch.save(value, path)
    return value


def variant(coords: torch.Tensor, eigenvalues: torch.Tensor, dims: int, kind: str, shrink: float) -> torch.Tensor:
    """Patch descriptors: PCA coordinates cropped to ``dims`` and scaled by 1/√(λ + ε) (``white``: ε = 1e-9;
    ``shrunk``: ε = shrink · mean λ of the kept dims; ``pca``: no scaling), L2-normalised."""
    lam = eigenvalues[:dims].double()
    if kind == "pca":
        scale = torch.ones_like(lam)
    else:
        scale = 1 / (lam + (1e-9 if kind == "white" else shrink * lam.mean())).sqrt()
    out = coords[..., :dims].double() * scale
    return torch.nn.functional.normalize(out, dim=-1).float()


def raw_scores(db: torch.Tensor, q: torch.Tensor, grid, ranked: np.ndarray) -> np.ndarray:
    """Rapid scores ``(Q, top)`` of each query's shortlist, by the library's ``size_scores``."""
    preset = get_preset("speed")
    grids = torch.tensor([grid])

    def read(rows):
        return db[torch.as_tensor(rows)], grids.expand(len(rows), 2)

    return np.stack([size_scores(q[i], grid, read, ranked[i], preset, 0)[0].numpy() for i in range(len(q))])


def norm(x: np.ndarray, how: str) -> np.ndarray:
    """Per query over its shortlist: min-max to [0, 1] or z-score ((x − mean) / std)."""
    if how == "minmax":
        low, high = x.min(1, keepdims=True), x.max(1, keepdims=True)
        return np.where(high > low, (x - low) / np.where(high > low, high - low, 1), 0)
    std = x.std(1, keepdims=True)
    return np.where(std > 0, (x - x.mean(1, keepdims=True)) / np.where(std > 0, std, 1), 0)


def fused_recall(raw, sims, ranked, positives, top, how, lam) -> float:
    """R@1 after re-ranking each query's top ``top`` with (1 − λ)·norm(patch) + λ·norm(global similarity)."""
    raw, sims, ranked = raw[:, :top], sims[:, :top], ranked[:, :top]
    score = (1 - lam) * norm(raw, how) + lam * norm(sims, how)
    order = np.argsort(-score, axis=1, kind="stable")
    return recall_at_n(np.take_along_axis(ranked, order, 1), positives, (1,))[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--cache", type=Path, default=work_dir("verify-whitening"),
                        help=f"cached maps and projections (default: under ${ENV}, else the system's temp dir)")
    parser.add_argument("--clusters", type=int, default=64)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--set", choices=("gardens", "nordland"), default="gardens")
    parser.add_argument("--variants", default="white:0,pca:0,shrunk:1,shrunk:10,shrunk:100",
                        help="kind:shrink pairs, comma-separated")
    parser.add_argument("--dims", default="128,512")
    parser.add_argument("--out", type=Path, default=None)
    add_results_option(parser)


def run(args: argparse.Namespace) -> None:
    """Run the benchmark with the parsed options."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args.cache.mkdir(parents=True, exist_ok=True)
    gp_left = paths("gardens")[0]
    left, right, positives, pre = paths(args.set)
    model = model_for(args.clusters, args.cache, gp_left)  # clustered on Gardens Point day_left
    if pre is not None:
        model.config = dataclasses.replace(model.config, preprocessing=pre)
    db_maps = feature_maps(model, left, args.cache, f"{args.set}_db")
    q_maps = feature_maps(model, right, args.cache, f"{args.set}_q")
    with torch.no_grad():
        g_db, g_q = (torch.cat([model.pool_features(m) for m in maps.split(8)]).numpy() for maps in (db_maps, q_maps))
    dist = np.sqrt(np.maximum(0, (g_q ** 2).sum(1)[:, None] + (g_db ** 2).sum(1)[None] - 2 * g_q @ g_db.T))
    ranked = np.argsort(dist, axis=1, kind="stable")[:, :100]
    sims = -np.take_along_axis(dist, ranked, 1)
    tag = f"{args.set}_K{args.clusters}_n{args.samples}"
    basis = cached(args.cache / f"basis_{tag}.pt", lambda: fit_basis(model, db_maps, args.samples).state_dict())
    white = PCAWhitening(model.pool.output_dim, BASIS)
    white.load_state_dict(basis)
    db = cached(args.cache / f"db_{tag}.pt", lambda: projections(model, white, db_maps))
    q = cached(args.cache / f"q_{tag}.pt", lambda: projections(model, white, q_maps))
    grid = window_grid(db_maps.shape[2], db_maps.shape[3], 5, 1)
    results = {"global": recall_at_n(ranked, positives, (1,))[1], "rows": []}
    print(f"{tag}: global R@1 {results['global']:.1f}; eigenvalues λ1 {white.eigenvalues[0]:.3g} λ128 "
          f"{white.eigenvalues[127]:.3g} λ512 {white.eigenvalues[-1]:.3g}", flush=True)
    for kind, shrink in [(v.split(":")[0], float(v.split(":")[1])) for v in args.variants.split(",")]:
        for dims in [int(d) for d in args.dims.split(",")]:
            raw = raw_scores(variant(db, white.eigenvalues, dims, kind, shrink),
                             variant(q, white.eigenvalues, dims, kind, shrink), grid, ranked)
            for top in (20, 100):
                for how in ("minmax", "zscore"):
                    row = {"kind": kind, "shrink": shrink, "dims": dims, "top": top, "norm": how,
                           **{f"lam{lam}": fused_recall(raw, sims, ranked, positives, top, how, lam)
                              for lam in (0.0, 0.25, 0.5, 0.75)}}
                    results["rows"].append(row)
                    print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
