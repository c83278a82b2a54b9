"""Descriptors for the scale benchmarks: real ones, and many more made from them with place-like perturbations.

Real: MobileNetV2 (ImageNet weights, offline) cut at its last conv layer (1280 channels) + NetVLAD (K = 64, so
81,920-D), centroids k-means'd on training images. Training pool (k-means, PCA whitening, ANN training): two
generated cities (seeds 1, 2; every image) and 1,200 real Nordland thumbnails; evaluation sets (never trained on):
Gardens Point (day_left database, day_right queries, ±2 frames) and the generated city of seed 0 (every split,
25 m). PCA whitening to 4096 dims is fitted on the pool; smaller sizes crop it (first dims, re-normalised).

Expanded (``expand``): each generated database vector is a real descriptor mixed with a second one
(x = α·a + (1−α)·b, α ~ U(0.6, 1)) plus a real *same-place* view change (a Gardens Point day_right − day_left pair,
or a city query − its database image) scaled by U(0, 0.5), re-normalised: the vectors sit around the real ones in
clumps of ~N/pool images per place, varying along directions real viewpoint and appearance changes take. A query
is a generated database vector plus another real view change (scale U(0.5, 1)), re-normalised; its source vector
is its one positive. Above 8,192 dims (the 32,768-D exact-search case) the mixing is left out to halve the
generation time: a real descriptor plus a scaled real view change. Results are cached as float16 under the cache
folder (``--cache``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import SHARED_DATA
from netvlad.data import open_dataset
from netvlad.data.synthetic import CityConfig, generate_city
from netvlad.extract.clusters import ClusterConfig, initialize_clusters
from netvlad.extract.descriptors import extract_descriptors
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.nn.whitening import PCAWhitening

logger = logging.getLogger("scale")
CITY_SIZE = (160, 120)
SIMPLE_ABOVE = 8192  # above this dim, a generated vector is one real descriptor + a real view change (no mixing)


def _city_images(root: Path) -> tuple[list[Path], list[Path], list[np.ndarray]]:
    """Database and query paths of every split of a generated city, and query positives (25 m) as db indices."""
    db, queries, positives = [], [], []
    for split in ("train", "val", "test"):
        dataset = open_dataset(root, split=split)
        offset = len(db)
        db += dataset.database.paths()
        queries += dataset.queries.paths()
        positives += [p + offset for p in dataset.positives(25.0)]
    return db, queries, positives


def _model(pool_paths: list[Path]) -> PlaceModel:
    config = ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=64,
                         preprocessing=Preprocessing("longest", (320,)))
    model = PlaceModel(config, pretrained=True).eval()
    initialize_clusters(model, pool_paths, ClusterConfig(num_images=300, niter=25), batch_size=16)
    return model


def _describe(model: PlaceModel, paths: list[Path], path: Path) -> np.ndarray:
    if not path.exists():
        logger.info("describing %d images -> %s", len(paths), path)
        np.save(path, extract_descriptors(model, paths, batch_size=16, workers=1).astype(np.float16))
    return np.load(path)


def real_sets(cache: Path, cities: list[Path]) -> dict:
    """Raw 81,920-D descriptors (float16) of the pool and of the two evaluation sets, with their positives.

    ``cities``: the generated cities of seeds 0, 1, 2 (default size), rendered there first where missing.
    """
    cache.mkdir(parents=True, exist_ok=True)
    for seed, root in enumerate(cities):  # reused as they are when already rendered from the same config
        generate_city(CityConfig.preset("default", seed=seed), root, workers=2)
    city0, pool_cities = cities[0], cities[1:]
    pool_paths = [p for c in pool_cities for part in _city_images(c)[:2] for p in part]
    nordland = sorted((SHARED_DATA / "nordland" / "summer").glob("*.png"))[::4] + \
        sorted((SHARED_DATA / "nordland" / "winter").glob("*.png"))[2::4]
    pool_paths += nordland
    names = ("pool", "gp_db", "gp_q", "city_db", "city_q")
    if not all((cache / f"{n}.npy").exists() for n in names):  # one model describes all five (same centroids)
        for name in names:
            (cache / f"{name}.npy").unlink(missing_ok=True)
        model = _model(pool_paths[::7])
    else:
        model = None
    gp = SHARED_DATA / "gardens_point"
    c_db, c_q, c_pos = _city_images(city0)
    sets = {"pool": _describe(model, pool_paths, cache / "pool.npy"),
            "gp_db": _describe(model, sorted((gp / "day_left").glob("*.jpg")), cache / "gp_db.npy"),
            "gp_q": _describe(model, sorted((gp / "day_right").glob("*.jpg")), cache / "gp_q.npy"),
            "city_db": _describe(model, c_db, cache / "city_db.npy"),
            "city_q": _describe(model, c_q, cache / "city_q.npy")}
    frames = np.arange(len(sets["gp_q"]))
    sets["gp_pos"] = [np.flatnonzero(np.abs(np.arange(len(sets["gp_db"])) - f) <= 2) for f in frames]
    sets["city_pos"] = c_pos
    return sets


def whitening(sets: dict, cache: Path, dim: int = 4096) -> PCAWhitening:
    """PCA whitening raw -> ``dim`` fitted on the pool (cached)."""
    path = cache / f"whitening{dim}.pt"
    layer = PCAWhitening(sets["pool"].shape[1], dim)
    if path.exists():
        layer.load_state_dict(torch.load(path))
    else:
        logger.info("fitting PCA whitening %d -> %d on %d pool descriptors", layer.in_dim, dim, len(sets["pool"]))
        layer.fit(torch.from_numpy(sets["pool"].astype(np.float32)))
        torch.save(layer.state_dict(), path)
    return layer


def apply(layer: PCAWhitening | None, x: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Whitened (and cropped to ``dim``) or, without a layer, raw descriptors cropped to ``dim``; float32, unit L2."""
    x = np.asarray(x, dtype=np.float32)
    if layer is not None:
        with torch.no_grad():
            crop = layer.crop(dim) if dim and dim < layer.out_dim else layer
            return crop(torch.from_numpy(x)).numpy()
    x = x[:, :dim] if dim else x
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def view_changes(sets: dict, transform) -> np.ndarray:
    """Real same-place differences (query − its best positive), transformed like the descriptors."""
    gp_db, gp_q = transform(sets["gp_db"]), transform(sets["gp_q"])
    c_db, c_q = transform(sets["city_db"]), transform(sets["city_q"])
    pairs = [gp_q - gp_db[: len(gp_q)]]
    has = [i for i, p in enumerate(sets["city_pos"]) if len(p)]
    best = [p[np.argmin(np.linalg.norm(c_db[p] - c_q[i], axis=1))] for i, p in
            ((i, sets["city_pos"][i]) for i in has)]
    pairs.append(c_q[has] - c_db[best])
    return np.concatenate(pairs).astype(np.float32)


def expand(base: np.ndarray, changes: np.ndarray, count: int, seed: int):
    """Yield ``count`` generated database vectors ``(c, dim)`` float16 in chunks of ≤ 64 MiB (see the docstring).

    Made with torch (multi-threaded gathers and a vectorised float16 cast): numpy's cast alone would take longer
    than writing the 16 GiB store.
    """
    generator = torch.Generator().manual_seed(seed)
    base_t, changes_t = torch.from_numpy(np.ascontiguousarray(base)), torch.from_numpy(np.ascontiguousarray(changes))
    chunk = max(256, 2**24 // base.shape[1])
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        beta = torch.rand(n, 1, generator=generator) * 0.5
        pick = torch.randint(0, len(base_t), (2, n), generator=generator)
        if base.shape[1] <= SIMPLE_ABOVE:
            alpha = torch.rand(n, 1, generator=generator) * 0.4 + 0.6
            x = alpha * base_t[pick[0]] + (1 - alpha) * base_t[pick[1]]
        else:  # one real descriptor, no mixing: half the passes over memory at 32,768-D
            x = base_t[pick[0]]
        x += beta * changes_t[torch.randint(0, len(changes_t), (n,), generator=generator)]
        yield (x / x.norm(dim=1, keepdim=True)).half().numpy()


def queries_from(db: np.ndarray, sources: np.ndarray, changes: np.ndarray, seed: int) -> np.ndarray:
    """Queries ``(Q, dim)``: database rows ``sources`` plus a real view change scaled U(0.5, 1), re-normalised."""
    from netvlad.search.exact import read_rows  # pread: mapping the touched rows mapped 1.2 GiB of a 1.9 GiB store

    rng = np.random.default_rng(seed)
    x = read_rows(db, np.sort(sources))[np.argsort(np.argsort(sources))]
    x += rng.uniform(0.5, 1.0, (len(x), 1)).astype(np.float32) * changes[rng.integers(0, len(changes), len(x))]
    return x / np.linalg.norm(x, axis=1, keepdims=True)
