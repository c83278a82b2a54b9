"""The trajectory scores' cost against exact search, side by side in one run: ``diagonal`` (raw) and
``diagonal-causal-standardised`` (the default), offline (:func:`diagonal_rank` over a block of query frames) and
online (:class:`OnlineDiagonal`, one frame at a time, over a fixed map and over a map that grows by one entry a
frame, as a loop-closure stream's does) at 10⁵ database frames of 256-D and 1280-D random unit descriptors,
queries following the route with noise.

Times are this thread's CPU time (the machine may be shared), each method alternated with exact search
``--repeats`` times and the fastest of each kept; the ratio is what a user pays over an exact search's top-k.

    python -m benchmarks diagonal-cost [--sizes 100000] [--dim 256 1280] [--queries 300] [--online 30]
                                       [--repeats 2] [--threads 1] [--results docs/results]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import add_results_option
from netvlad.data.sequences import SequenceOrder
from netvlad.match.diagonal import OnlineDiagonal, diagonal_rank
from netvlad.match.sequence import SequenceConfig
from netvlad.search.exact import exact_search

K = 100  # candidates kept per query, by exact search and by the sequence score alike


def route(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(database (n, dim), queries (queries, dim), first matching database frame): unit descriptors, the queries
    a noisy copy of a stretch of the route."""
    rng = np.random.default_rng(seed)
    db = rng.standard_normal((n, dim), dtype=np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    start = n // 3
    q = db[start:start + queries] + 1.5 * rng.standard_normal((queries, dim), dtype=np.float32) / dim**0.5
    return db, q / np.linalg.norm(q, axis=1, keepdims=True), start


def cpu_seconds(task) -> tuple[float, object]:
    """(this thread's CPU seconds, result) of ``task()``."""
    start = time.thread_time()
    out = task()
    return time.thread_time() - start, out


SCORES = {"diagonal": False, "diagonal-causal-standardised": True}  # sequence method: seen_only


def offline(db: np.ndarray, q: np.ndarray, seen_only: bool) -> object:
    return diagonal_rank(q, db, SequenceOrder.single(np.arange(len(q))), None, SequenceConfig(), K,
                         seen_only=seen_only)


def online(db: np.ndarray, q: np.ndarray, seen_only: bool, growing: bool = False) -> object:
    """Push ``q`` one frame at a time; ``growing``: the map's last ``len(q)`` rows become matchable one a frame."""
    matcher = OnlineDiagonal(db, None, SequenceConfig(), seen_only=seen_only)
    first = len(db) - len(q) if growing else None
    return [matcher.push(x, count=None if first is None else first + i, k=K) for i, x in enumerate(q)]


def measure(n: int, dim: int, queries: int, frames: int, repeats: int) -> list[dict]:
    """Exact search and each score offline, online and online over a growing map, alternated ``repeats`` times;
    ms per query frame, one row per score."""
    db, q, start = route(n, dim, queries)
    times: dict[str, list[float]] = {"exact": [], "exact one by one": []}
    rankings = {}
    for _ in range(repeats):
        seconds, (_, found) = cpu_seconds(lambda: exact_search(db, q, K))
        times["exact"].append(seconds / len(q))
        seconds, _ = cpu_seconds(lambda: [exact_search(db, x[None], K) for x in q[:frames]])
        times["exact one by one"].append(seconds / frames)
        for name, seen in SCORES.items():
            seconds, rankings[name] = cpu_seconds(lambda seen=seen: offline(db, q, seen))
            times.setdefault(f"{name} offline", []).append(seconds / len(q))
            seconds, _ = cpu_seconds(lambda seen=seen: online(db, q[:frames], seen))
            times.setdefault(f"{name} online", []).append(seconds / frames)
            seconds, _ = cpu_seconds(lambda seen=seen: online(db, q[:frames], seen, growing=True))
            times.setdefault(f"{name} growing", []).append(seconds / frames)
    truth = np.arange(start, start + len(q))
    best = {name: 1000 * min(values) for name, values in times.items()}
    return [{"score": name, "n": n, "dim": dim, "queries": queries, "frames": frames, "exact": best["exact"],
             "exact one by one": best["exact one by one"], "offline": best[f"{name} offline"],
             "online": best[f"{name} online"], "growing": best[f"{name} growing"],
             "single_r1": 100 * float((found[:, 0] == truth).mean()),
             "r1": 100 * float((rankings[name].ranked[:, 0] == truth).mean())} for name in SCORES]


def table(rows: list[dict]) -> str:
    lines = ["| score | database frames | dim | exact search, block (ms/query) | score L = 10, block | ratio | "
             "exact search, one frame | online, one frame | ratio | online, growing map | ratio | single R@1 | "
             "score R@1 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        one = r["exact one by one"]
        lines.append(f"| {r['score']} | {r['n']:,} | {r['dim']} | {r['exact']:.2f} | {r['offline']:.2f} | "
                     f"{r['offline'] / r['exact']:.2f}× | {one:.2f} | {r['online']:.2f} | {r['online'] / one:.2f}× | "
                     f"{r['growing']:.2f} | {r['growing'] / one:.2f}× | {r['single_r1']:.1f} | {r['r1']:.1f} |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000], help="database frames")
    parser.add_argument("--dim", type=int, nargs="+", default=[256, 1280], help="descriptor dims")
    parser.add_argument("--queries", type=int, default=300, help="query frames matched as one block")
    parser.add_argument("--online", type=int, default=30, help="query frames pushed one at a time")
    parser.add_argument("--repeats", type=int, default=2, help="alternations; the fastest of each is kept")
    parser.add_argument("--threads", type=int, default=1)
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Run the benchmark; returns its Markdown table."""
    torch.set_num_threads(args.threads)
    rows = [row for d in args.dim for n in args.sizes for row in measure(n, d, args.queries, args.online,
                                                                          args.repeats)]
    return (f"{args.queries} query frames as one block, {args.online} pushed one at a time, top {K}, "
            f"`SequenceConfig()` (L = 10 causal; a growing map: the last {args.online} rows become matchable one a "
            f"frame), CPU time of this thread, fastest of {args.repeats}:\n\n"
            + table(rows))
