"""The steps of ``python -m benchmarks scale``, each in its own process so that its peak RSS is its own."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np

DB, QUERIES, SOURCES, EXACT = "db", "queries.npy", "sources.npy", "exact.npy"
K = 10


def setup(threads: int) -> None:
    import faiss
    import torch

    faiss.omp_set_num_threads(threads)
    torch.set_num_threads(threads)


def measured(name: str, *args) -> dict:
    """``name(*args)`` -> its dict, with ``seconds`` (unless the step timed itself) and ``rss`` (peak bytes)."""
    start = time.perf_counter()
    out = globals()[name](*args)
    out.setdefault("seconds", time.perf_counter() - start)
    out["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def prepare_base(cache: str, cities: list[str], work: str, dim: int, raw: bool = False) -> dict:
    """Real descriptors (whitened to ``dim``, or raw cropped to ``dim``) and real view changes -> an .npz path."""
    from benchmarks import scale_data

    path = Path(work) / f"base{dim}{'raw' if raw else ''}.npz"
    if not path.exists():
        sets = scale_data.real_sets(Path(cache), [Path(c) for c in cities])
        layer = None if raw or dim > 4096 else scale_data.whitening(sets, Path(cache))

        def transform(x):
            return scale_data.apply(layer, x, dim)

        base = np.concatenate([transform(sets[k]) for k in ("pool", "gp_db", "gp_q", "city_db", "city_q")])
        np.savez(path, base=base, changes=scale_data.view_changes(sets, transform))
    return {"path": str(path)}


PER_PANORAMA = 24  # database images per panorama (2 pitches × 12 yaws, as in Pittsburgh 250k)


def street_points(rng: np.random.Generator, count: int, extent: float = 5000.0, streets: int = 13) -> np.ndarray:
    """``count`` points (N, 2) metres uniformly along a grid of ``streets`` × ``streets`` straight streets."""
    along = rng.uniform(0, extent, count)
    offset = rng.integers(0, streets, count) * extent / (streets - 1)
    vertical = rng.random(count) < 0.5
    return np.where(vertical[:, None], np.stack([offset, along], 1), np.stack([along, offset], 1))


def generated_positions(num_database: int, num_queries: int, seed: int = 0):
    """A GeoDataset of generated positions (no images) with Pittsburgh-250k-like density: panoramas every ~12 m
    along a 13 × 13 street grid over 5 × 5 km, queries anywhere on the streets with ±5 m GPS noise."""
    from netvlad.data import GeoDataset, ImageList

    rng = np.random.default_rng(seed)
    panoramas = street_points(rng, -(-num_database // PER_PANORAMA))
    db = np.repeat(panoramas, PER_PANORAMA, axis=0)[:num_database]
    q = street_points(rng, num_queries) + rng.normal(0, 5.0, (num_queries, 2))
    pano_ids = np.repeat(np.arange(len(panoramas)), PER_PANORAMA)[:num_database].astype(np.float64)
    database = ImageList("/db", [f"{i}.jpg" for i in range(num_database)], db, times=pano_ids)
    queries = ImageList("/q", [f"q{i}.jpg" for i in range(num_queries)], q)
    return GeoDataset("generated-250k", database, queries)


def groundtruth(n: int, queries: int) -> dict:
    """Seconds of the 25 m positives of ``queries`` generated queries among ``n`` generated positions."""
    dataset = generated_positions(n, queries)
    start = time.perf_counter()
    positives = dataset.positives(25.0)
    return {"seconds": time.perf_counter() - start,
            "notes": f"{np.mean([len(p) for p in positives]):.0f} positives per query"}


def write_store(base_path: str, folder: str, n: int, queries: int) -> dict:
    from benchmarks import scale_data
    from netvlad.extract.store import DescriptorStore
    from netvlad.search.exact import release_pages

    data = np.load(base_path)
    base, changes = data["base"], data["changes"]
    folder = Path(folder)
    store = DescriptorStore.create(folder / DB, [f"{i:07d}.jpg" for i in range(n)], base.shape[1], "float16")
    start = 0
    for chunk in scale_data.expand(base, changes, n, seed=n):
        store.write(np.arange(start, start + len(chunk)), chunk)
        release_pages(store.descriptors[start:start + len(chunk)])  # written and flushed: drop from RSS
        start += len(chunk)
    sources = np.random.default_rng(1).choice(n, queries, replace=False)
    np.save(folder / QUERIES, scale_data.queries_from(store.descriptors, sources, changes, seed=2))
    np.save(folder / SOURCES, sources)
    size = (folder / DB / "descriptors.npy").stat().st_size
    return {"disk": size, "notes": f"{size / 1024**3:.2f} GiB on disk ({size / n:.0f} B/vector)"}


def _load(folder: str):
    from netvlad.extract.store import DescriptorStore

    folder = Path(folder)
    return DescriptorStore.open(folder / DB), np.load(folder / QUERIES), np.load(folder / SOURCES)


def _recall(found: np.ndarray, sources: np.ndarray) -> str:
    return "R@1/5/10 " + "/".join(f"{100 * (found[:, :k] == sources[:, None]).any(1).mean():.1f}" for k in (1, 5, 10))


def exact(folder: str, budget: float) -> dict:
    from netvlad.search.exact import exact_search, plan_search

    store, queries, sources = _load(folder)
    start = time.perf_counter()
    _, found = exact_search(store.descriptors, queries, K, max_memory=budget)
    seconds = time.perf_counter() - start
    np.save(Path(folder) / EXACT, found)
    plan = plan_search(len(queries), len(store), store.dim, K, budget, 2)
    pair_ns = seconds / (len(queries) * len(store)) * 1e9
    return {"seconds": seconds, "pair_ns": pair_ns, "notes": f"{pair_ns:.3f} ns per query×vector; "
            f"{plan.query_block}×{plan.db_chunk} blocks; {_recall(found, sources)}"}


def exact_recall(folder: str, budget: float) -> dict:
    """The big case through the public path: Recall@N of ``evaluate_descriptors`` on the float16 memory map."""
    from netvlad.eval.recall import evaluate_descriptors

    store, queries, sources = _load(folder)
    start = time.perf_counter()
    result = evaluate_descriptors(store.descriptors, queries, [np.array([s]) for s in sources], ns=(1, 5, 10),
                                  max_memory=budget)
    seconds = time.perf_counter() - start
    recall = "/".join(f"{r:.1f}" for r in result.recall.values())
    return {"seconds": seconds, "notes": f"evaluate_descriptors on the float16 memmap, R@1/5/10 {recall}; "
            f"{seconds / (len(queries) * len(store)) * 1e9:.3f} ns per query×vector"}


def in_ram(folder: str) -> dict:
    import faiss

    store, queries, _ = _load(folder)
    db = store.load()
    index = faiss.IndexFlatL2(store.dim)
    index.add(db)
    start = time.perf_counter()
    index.search(queries, K)
    seconds = time.perf_counter() - start
    pair_ns = seconds / (len(queries) * len(store)) * 1e9
    return {"seconds": seconds, "pair_ns": pair_ns,
            "notes": f"{pair_ns:.3f} ns per query×vector (float32 database loaded first, not timed)"}


def ann(folder: str, kind: str, budget: float) -> dict:
    from netvlad.search.exact import iter_chunks, plan_search
    from netvlad.search.index import (
        INDEX_KINDS,
        IndexConfig,
        approximate_kinds,
        configure,
        search_index,
        search_rows,
        train_index,
        training_sample,
        write_index,
    )

    store, queries, sources = _load(folder)
    config, n = IndexConfig(kind=kind), len(store)
    index = INDEX_KINDS.get(kind).build(store.dim, n, config)
    t0 = time.perf_counter()
    if not index.is_trained:
        train_index(index, training_sample(store.descriptors, np.arange(n), config.samples(n)), config)
    t1 = time.perf_counter()
    for _, chunk in iter_chunks(store.descriptors, plan_search(1, n, store.dim, 1, budget, 2).db_chunk):
        index.add(chunk)
    t2 = time.perf_counter()
    configure(index, config)
    _, found = search_index(index, queries, K)
    t3 = time.perf_counter()
    reranked = kind in approximate_kinds()
    if reranked:  # the library's default for PQ kinds: the top 100 re-ranked exactly from the float16 store
        _, found_rr = search_rows(index, queries, K, config, store.descriptors)
        t4 = time.perf_counter()
    write_index(index, Path(folder) / f"{kind}.faiss")
    size = (Path(folder) / f"{kind}.faiss").stat().st_size
    exact_top1 = np.load(Path(folder) / EXACT)[:, 0]
    top1, top10 = (found[:, 0] == exact_top1).mean(), (found == exact_top1[:, None]).any(1).mean()
    notes = (f"train {t1 - t0:.1f} s, add {t2 - t1:.1f} s, search {t3 - t2:.2f} s; exact NN in top-1 "
             f"{100 * top1:.1f} %, in top-10 {100 * top10:.1f} %; index {size / n:.0f} B/vector "
             f"(float32: {4 * store.dim}); {_recall(found, sources)}")
    out = {"seconds": t3 - t0, "train_s": t1 - t0, "add_s": t2 - t1, "search_s": t3 - t2, "index_bytes": size,
           "top1": top1, "top10": top10}
    if reranked:
        out.update(search_rr_s=t4 - t3, top1_rr=(found_rr[:, 0] == exact_top1).mean())
        notes += (f"; with re-rank {config.rerank}: search {t4 - t3:.2f} s, exact NN in top-1 "
                  f"{100 * out['top1_rr']:.1f} %, {_recall(found_rr, sources)}")
    return {**out, "notes": notes}


def mining(folder: str) -> dict:
    """One mining pass of the queries against all N (as the loop mines a cache refresh), distances read from the
    memory-mapped float16 store; ``rss`` shows that memory does not grow with N beyond the mapped pages it drops."""
    from netvlad.train.mining import mine
    from netvlad.train.pairs import MINING_MEMORY

    store, queries, sources = _load(folder)
    n = len(store)
    start = time.perf_counter()
    positives = [np.array([s]) for s in sources]
    tuples, _ = mine(store.descriptors, queries, np.arange(n), positives=positives, non_negatives=positives,
                     previous=np.full((len(queries), 10), -1), rng=np.random.default_rng(0), num_database=n)
    return {"seconds": time.perf_counter() - start,
            "notes": f"{len(tuples)} tuples; working budget {MINING_MEMORY / 1024**2:.0f} MiB"}
