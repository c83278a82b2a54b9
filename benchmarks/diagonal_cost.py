"""The plain trajectory score's cost (``diagonal``) against exact search, side by side in one run: offline
(:func:`diagonal_rank` over a block of query frames) and online (:class:`OnlineDiagonal`, one frame at a time)
at 10⁵ database frames of 256-D and 1280-D random unit descriptors, queries following the route with noise.

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


def offline(db: np.ndarray, q: np.ndarray) -> object:
    return diagonal_rank(q, db, SequenceOrder.single(np.arange(len(q))), None, SequenceConfig(), K)


def online(db: np.ndarray, q: np.ndarray) -> object:
    matcher = OnlineDiagonal(db, None, SequenceConfig())
    return [matcher.push(x, k=K) for x in q]


def measure(n: int, dim: int, queries: int, frames: int, repeats: int) -> dict:
    """Exact search, offline diagonal and online diagonal, alternated ``repeats`` times; ms per query frame."""
    db, q, start = route(n, dim, queries)
    times: dict[str, list[float]] = {"exact": [], "exact one by one": [], "offline": [], "online": []}
    for _ in range(repeats):
        seconds, (_, found) = cpu_seconds(lambda: exact_search(db, q, K))
        times["exact"].append(seconds / len(q))
        seconds, ranking = cpu_seconds(lambda: offline(db, q))
        times["offline"].append(seconds / len(q))
        seconds, _ = cpu_seconds(lambda: [exact_search(db, x[None], K) for x in q[:frames]])
        times["exact one by one"].append(seconds / frames)
        seconds, _ = cpu_seconds(lambda: online(db, q[:frames]))
        times["online"].append(seconds / frames)
    truth = np.arange(start, start + len(q))
    best = {name: 1000 * min(values) for name, values in times.items()}
    return {"n": n, "dim": dim, "queries": queries, "frames": frames, **best,
            "single_r1": 100 * float((found[:, 0] == truth).mean()),
            "diagonal_r1": 100 * float((ranking.ranked[:, 0] == truth).mean())}


def table(rows: list[dict]) -> str:
    lines = ["| database frames | dim | exact search, block (ms/query) | diagonal L = 10, block | ratio | "
             "exact search, one frame | online diagonal, one frame | ratio | single R@1 | diagonal R@1 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['dim']} | {r['exact']:.2f} | {r['offline']:.2f} | "
                     f"{r['offline'] / r['exact']:.2f}× | {r['exact one by one']:.2f} | {r['online']:.2f} | "
                     f"{r['online'] / r['exact one by one']:.2f}× | {r['single_r1']:.1f} | {r['diagonal_r1']:.1f} |")
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
    rows = [measure(n, d, args.queries, args.online, args.repeats) for d in args.dim for n in args.sizes]
    return (f"{args.queries} query frames as one block, {args.online} pushed one at a time, top {K}, "
            f"`SequenceConfig()` (L = 10 causal), CPU time of this thread, fastest of {args.repeats}:\n\n"
            + table(rows))
