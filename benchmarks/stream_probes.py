"""How many IVF lists the stream must probe for its sequence matches to be exact search's, at 10⁵ and 10⁶ entries.

One :class:`netvlad.PlaceDatabase` of N generated 1280-D entries (``stream.py``'s random-walk route, added in chunks
so that only the database holds the rows), IVF-PQ trained as the stream trains it (exact re-scoring of its top
``IndexConfig.rerank`` from the stored rows). Then ``--frames`` stream frames (a noisy revisit of the route, as in
``stream.py``): every frame is searched (top 50, ``exclude_recent``) once per ``--probes`` setting, and, with
``--exact``, by exact search of the same eligible rows; each setting feeds its own causal sequence matcher
(``StreamSequence``, L = ``--sequence``) before the frame is added once. Settings are interleaved frame by frame,
so their latencies see the same machine load; times are the thread's CPU time (a loaded machine's preemptions
left out). Per setting: search and search + sequence p50 / p99 (ms), the share
of sequence matches within ±2 entries of the revisited one, and (``--exact``) the share equal to exact search's
sequence match.

    python -m benchmarks stream-probes --size 100000 --probes 0 32 64 128 --exact [--frames 200] [--threads 1]

``0`` in ``--probes`` is the library's default rule (:meth:`IndexConfig.probes`). 10⁶ needs ~5 GiB for the rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import add_results_option
from benchmarks.stream import DIM, percentiles, route

CHUNK = 131_072  # entries generated and added at once


def filled(n: int, frames: int, rng: np.random.Generator):
    """A place database of ``n`` route entries (times 0..n−1), room for ``frames`` more, IVF-PQ trained."""
    from netvlad.places.database import PlaceDatabase
    from netvlad.places.database_config import DatabaseConfig
    from netvlad.search.index import IndexConfig

    db = PlaceDatabase(DIM, DatabaseConfig(IndexConfig(kind="ivfpq"), min_train=min(1000, n)))
    db.reserve(n + frames)
    for start in range(0, n, CHUNK):
        part = route(min(CHUNK, n - start), rng)
        db.add(part, [f"{i}" for i in range(start, start + len(part))],
               times=np.arange(start, start + len(part), dtype=np.float64))
    start = time.thread_time()
    db.search(db.descriptors[:1], 1)  # IVF-PQ trains here
    return db, time.thread_time() - start


def run_probes(n: int, probes: list[int], frames: int, length: int, exact: bool, seed: int = 0) -> dict:
    """Latency and sequence-match agreement of every probe setting over the same frames."""
    import faiss

    from netvlad.places.stream_sequence import StreamSequence

    rng = np.random.default_rng(seed)
    db, train_s = filled(n, frames, rng)
    revisit = int(rng.integers(0, max(1, n - frames)))
    queries = db.descriptors[revisit:revisit + frames] + 0.02 * rng.standard_normal((frames, DIM)).astype(np.float32)
    base = db.config
    nlist = faiss.extract_index_ivf(db.index).nlist
    settings = {p: dataclasses.replace(base, index=dataclasses.replace(base.index, nprobe=p or None)) for p in probes}
    names = [f"nprobe {base.index.probes(nlist, n) if p == 0 else p}{' (default)' if p == 0 else ''}"
             for p in probes] + (["exact"] if exact else [])
    matchers = {name: StreamSequence(length, DIM) for name in names}
    search_t = {name: [] for name in names}
    seq_t = {name: [] for name in names}
    best = {name: [] for name in names}
    for i, query in enumerate(queries):
        now = float(n + i)
        eligible = db.prefix_until(now - 30)
        for name, p in zip(names, probes + ([None] if exact else []), strict=True):
            t0 = time.thread_time()
            if p is None:
                _, ids = faiss.knn(query[None], db.descriptors[:eligible], 50)
            else:
                db.config = settings[p]
                _, ids = db.search(query[None], 50, exclude_after=now - 30)
            t1 = time.thread_time()
            match, _ = matchers[name].push(query, ids[0], db.descriptors, eligible)
            t2 = time.thread_time()
            search_t[name].append(t1 - t0)
            seq_t[name].append(t2 - t0)
            best[name].append(-1 if match is None else int(match))
        db.config = base
        db.add(query[None], [f"q{i}"], times=[now])
    truth = revisit + np.arange(frames)
    rows = []
    for name in names:
        found = np.array(best[name])
        row = {"setting": name, "search_ms": percentiles(search_t[name]),
               "search_sequence_ms": percentiles(seq_t[name]),
               "within_2": round(float(np.mean((found >= 0) & (np.abs(found - truth) <= 2))), 3)}
        if exact:
            row["equal_to_exact"] = round(float(np.mean(found == np.array(best["exact"]))), 3)
        rows.append(row)
    return {"size": n, "nlist": int(nlist), "rerank": base.index.rerank, "train_s": round(train_s, 1), "rows": rows}


def table(result: dict) -> str:
    """The Markdown table of one size's settings."""
    head = ("| entries | setting | search p50 / p99 ms | + sequence p50 / p99 ms | sequence match within ±2 "
            "| equal to exact search's |\n|---:|---|---:|---:|---:|---:|")
    lines = [head]
    for row in result["rows"]:
        s, q = row["search_ms"], row["search_sequence_ms"]
        equal = f"{100 * row['equal_to_exact']:.1f} %" if "equal_to_exact" in row else "not measured"
        lines.append(f"| {result['size']:,} | {row['setting']} | {s['p50']:.2f} / {s['p99']:.2f} | "
                     f"{q['p50']:.2f} / {q['p99']:.2f} | {100 * row['within_2']:.1f} % | {equal} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--probes", type=int, nargs="+", default=[0, 32, 64, 128],
                        help="IVF lists probed per search (0: the library's default rule)")
    parser.add_argument("--exact", action="store_true", help="also search exactly (slow at 10⁶: ~2 s a frame)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--sequence", type=int, default=10, help="sequence length L")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    add_results_option(parser)


def fragment_name(args: argparse.Namespace) -> str:
    """``stream-probes-SIZE``: one fragment per map size."""
    return f"stream-probes-{args.size}"


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options -> its Markdown table."""
    import faiss

    faiss.omp_set_num_threads(args.threads)
    result = run_probes(args.size, args.probes, args.frames, args.sequence, args.exact)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return (f"Thread CPU time, faiss {faiss.__version__}, numpy {np.__version__}; {result['nlist']} IVF lists, "
            f"exact re-scoring of the top {result['rerank']}, {args.frames} frames.\n\n{table(result)}")
