"""What approximate search and smaller descriptors cost in Recall@N on real sets, side by side with exact search.

Sets: Gardens Point (real photographs; day_left database, day_right queries, ±2 frames) and the generated city
(seed 0, every split, 25 m). Descriptors: MobileNetV2 + NetVLAD (K = 64, 81,920-D raw), PCA whitening fitted on a
separate training pool (see ``scale_data``), cropped to 4096 / 1024 / 512 dims. For each set and size: exact
Recall@1/5/10, then IVF-PQ, OPQ + IVF-PQ and HNSW with the library's default settings (trained on the pool's
descriptors, as one trains on a training set), in the same run.

    python -m benchmarks recall-loss [--dims 4096 1024 512] [--threads 2] [--cache DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from benchmarks import scale_data
from benchmarks.common import add_results_option, work_dir
from netvlad.eval.recall import recall_at_n
from netvlad.search.exact import exact_search
from netvlad.search.index import (
    IndexConfig,
    approximate_kinds,
    build_index,
    search_rows,
)

NS = (1, 5, 10)
KINDS = ("ivfpq", "opq-ivfpq", "hnsw")
MAX_ANN_DIM = 8192  # above: exact search only (the raw descriptors' row of Recall@N against the dim)


def recall(found: np.ndarray, positives) -> str:
    return " / ".join(f"{r:5.1f}" for r in recall_at_n(found, positives, NS).values())


def rows_for(name: str, db: np.ndarray, queries: np.ndarray, positives, pool: np.ndarray, label: str,
             opq_max_dim: int, nprobe: int | None = None, rerank: int = IndexConfig.rerank) -> list[str]:
    """Table rows: exact, then each approximate kind, on one set at one descriptor size."""
    _, exact = exact_search(db, queries, max(NS))
    out = [f"| {name} | {label} | exact | {recall(exact, positives)} | {4 * db.shape[1]} | |"]
    for kind in KINDS if db.shape[1] <= MAX_ANN_DIM else ():
        if kind == "opq-ivfpq" and db.shape[1] > opq_max_dim:
            continue
        config = IndexConfig(kind=kind, nprobe=nprobe, rerank=rerank)
        try:
            start = time.perf_counter()
            index = build_index(db, config, training=pool)
        except ValueError as error:
            out.append(f"| {name} | {label} | {kind} | – | – | {error} |")
            continue
        seconds = time.perf_counter() - start
        per_image = 4 * db.shape[1] + 8 * config.hnsw_m if kind == "hnsw" else config.code_bytes(db.shape[1]) + 8
        reranked = kind in approximate_kinds()
        variants = [("", 0), (f" + re-rank {config.rerank}", config.rerank)] if reranked else [("", 0)]
        for suffix, count in variants:
            _, found = search_rows(index, queries, max(NS), IndexConfig(kind=kind, nprobe=nprobe, rerank=count), db)
            same = 100 * (found[:, 0] == exact[:, 0]).mean()
            out.append(f"| {name} | {label} | {kind}{suffix} | {recall(found, positives)} | {per_image} | "
                       f"exact top-1 kept {same:.0f} %; built in {seconds:.0f} s |")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--dims", type=int, nargs="+", default=[1024, 512, 4096])
    parser.add_argument("--raw", action="store_true", help="also the raw 81,920-D descriptors (exact search only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nprobe", type=int, default=None, help="IVF lists visited per query (default: the library.s)")
    parser.add_argument("--rerank", type=int, default=IndexConfig.rerank, help="candidates re-ranked exactly")
    parser.add_argument("--opq-max-dim", type=int, default=1024, help="skip OPQ above this dim (its training is slow)")
    parser.add_argument("--cache", type=Path, default=work_dir("scale-cache"))
    parser.add_argument("--cities", type=Path, nargs=3, default=[work_dir("scale-city", c)
                                                                 for c in ("city", "city1", "city2")])
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options."""
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    sets = scale_data.real_sets(args.cache, args.cities)
    layer = scale_data.whitening(sets, args.cache)
    lines = ["| set | descriptor | search | R@1 / R@5 / R@10 | bytes per image in RAM | notes |",
             "|---|---|---|---|---:|---|"]
    header, tables = lines[:], []
    sizes = [(None, None, f"raw {sets['pool'].shape[1]}-D")] if args.raw else []
    sizes += [(layer, d, f"whitened {d}-D") for d in args.dims]
    for transform, dim, label in sizes:
        pool = scale_data.apply(transform, sets["pool"], dim)
        for name, key in (("Gardens Point", "gp"), ("city", "city")):
            db, q = (scale_data.apply(transform, sets[f"{key}_{s}"], dim) for s in ("db", "q"))
            lines += rows_for(name, db, q, sets[f"{key}_pos"], pool, label, args.opq_max_dim,
                              args.nprobe, args.rerank)
        print("\n".join(lines), flush=True)  # as each size finishes
        tables += lines[2:]
        lines = lines[:2]
    return "\n".join(header + tables)
