"""Speed a robot can use: per-frame latency of describe + search + sequence over a growing place database.

Side by side in one process at ``--threads`` (default 1):

- ``describe``: the bare model's per-frame time (MobileNetV2 + GeM, 1280-D, ImageNet weights) on real Gardens
  Point frames at ``--size`` pixels (longest side), and ``netvlad stream``'s whole per-frame time on the same
  frames (describe + search + sequence + add, loop-closure mode), so its overhead over the model is measured;
- for each map size N in ``--sizes`` and each kind (exact, IVF-PQ): a :class:`netvlad.PlaceDatabase` filled with N
  descriptor-only 1280-D entries (a random-walk route: neighbours alike, as a real traverse), then ``--frames``
  stream frames (a noisy revisit of the route) each searched with ``exclude_recent``, sequence-matched (each score
  of ``--scores``, default ``netvlad stream``'s, L = ``--sequence``, over every searchable entry or the frame's
  top 50) and added:
  p50/p99 of search, of search + sequence, and of the whole step; the
  bulk add throughput (entries/s), IVF-PQ's training time, and the database's memory (float32 rows + index).

    python -m benchmarks stream [--quick] [--sizes 1000 10000 100000] [--frames 200] [--threads 1]
        [--scores diagonal diagonal-causal-standardised]

Each score runs on the same map and stream frames (one row each), so their sequence top-1 compare side by side.

``--quick`` runs 10³ and 10⁴ only with 100 frames. 10⁶ (add it to ``--sizes``) needs ~5 GiB for the float32 rows;
maps above ``--flat-max`` are searched with IVF-PQ only.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from benchmarks.common import SHARED_DATA, add_results_option

DIM = 1280


def route_blocks(n: int, rng: np.random.Generator, step: float = 0.35, block: int = 4096):
    """Yield a route's ``n`` unit ``DIM``-D descriptors in blocks of ``block`` rows: each a small random step from
    the one before (drift within a block, a fresh direction mix between blocks)."""
    current = None
    for start in range(0, n, block):
        noise = rng.standard_normal((min(block, n - start), DIM), dtype=np.float32)
        if current is None:
            current = noise[0] / np.linalg.norm(noise[0])
        walk = np.cumsum(noise * step / np.sqrt(DIM), axis=0) + current
        walk /= np.linalg.norm(walk, axis=1, keepdims=True)
        current = walk[-1]
        yield walk


def route(n: int, rng: np.random.Generator, step: float = 0.35) -> np.ndarray:
    """``(n, DIM)`` unit descriptors of a route (:func:`route_blocks` in one array)."""
    return np.concatenate(list(route_blocks(n, rng, step)))


def percentiles(values) -> dict:
    values = np.asarray(values) * 1000
    return {"p50": round(float(np.percentile(values, 50)), 3), "p99": round(float(np.percentile(values, 99)), 3)}


def database_bytes(db) -> int:
    import faiss

    index = 0 if db.index is None else len(faiss.serialize_index(db.index))
    return int(db.count * DIM * 4 + index)


def run_size(n: int, kind: str, frames: int, length: int, seed: int = 0, score: str | None = None) -> dict:
    """Fill a database of ``n`` entries, then time ``frames`` stream steps with the sequence ``score`` (None:
    ``netvlad stream``'s default)."""
    from netvlad.match.sequence import DEFAULT_STREAM_SCORE
    from netvlad.places.database import PlaceDatabase
    from netvlad.places.database_config import DatabaseConfig
    from netvlad.places.stream_sequence import StreamSequence
    from netvlad.search.index import IndexConfig

    rng = np.random.default_rng(seed)
    revisit = int(rng.integers(0, max(1, n - frames)))
    db = PlaceDatabase(DIM, DatabaseConfig(IndexConfig(kind=kind), min_train=min(1000, n)))
    db.reserve(n + frames)  # the stream's own adds then copy nothing
    add_s, done, revisited = 0.0, 0, []
    for block in route_blocks(n, rng):  # added block by block: one copy of the rows (10⁶ entries: 5 GB)
        # a copy: a view, even an empty one, would keep its whole block (at 10⁶ every block: the rows twice)
        revisited.append(block[max(0, revisit - done):max(0, revisit + frames - done)].copy())
        start = time.perf_counter()
        db.add(block, [f"{i}" for i in range(done, done + len(block))],
               times=np.arange(done, done + len(block), dtype=np.float64))
        add_s += time.perf_counter() - start
        done += len(block)
    queries = np.concatenate(revisited)
    queries += 0.02 * rng.standard_normal(queries.shape).astype(np.float32)
    start = time.perf_counter()
    db.search(queries[:1], 1)  # IVF-PQ trains here
    train_s = time.perf_counter() - start
    score = DEFAULT_STREAM_SCORE if score is None else score
    matcher = StreamSequence(length, DIM, method=score)
    search_t, seq_t, step_t, hits = [], [], [], 0
    for i, query in enumerate(queries):
        now = float(n + i)
        t0 = time.perf_counter()
        distances, ids = db.search(query[None], 50, exclude_after=now - 30)
        t1 = time.perf_counter()
        best, _ = matcher.push(query, ids[0], db.descriptors, db.prefix_until(now - 30))
        t2 = time.perf_counter()
        db.add(query[None], [f"q{i}"], times=[now])
        t3 = time.perf_counter()
        search_t.append(t1 - t0)
        seq_t.append(t2 - t0)
        step_t.append(t3 - t0)
        hits += int(best is not None and abs(best - (revisit + i)) <= 2)
    return {"size": n, "kind": kind, "score": score, "add_per_s": round(n / add_s), "train_s": round(train_s, 3),
            "search_ms": percentiles(search_t), "search_sequence_ms": percentiles(seq_t),
            "step_ms": percentiles(step_t), "sequence_hits": round(hits / frames, 3),
            "slowest_frames": {int(i): round(seq_t[i] * 1000, 2) for i in np.argsort(seq_t)[::-1][:3]},
            "memory_mb": round(database_bytes(db) / 2**20, 1)}


def describe_times(size: int, frames: int, length: int) -> dict:
    """Per engine (torch; onnxruntime where installed): the bare model's and the whole stream step's per-frame
    times on real Gardens Point frames, interleaved frame by frame so both see the same machine load."""
    import torch
    from PIL import Image

    from netvlad.data.frames import Frame
    from netvlad.extract.engine import make_runner
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing
    from netvlad.places.stream import StreamConfig, StreamMatcher, describe_image

    folder = SHARED_DATA / "gardens_point" / "day_left"
    paths = sorted(folder.glob("*.jpg"))[:frames]
    if not paths:
        return {"skipped": f"no Gardens Point frames at {folder}"}
    config = ModelConfig(backbone="mobilenet_v2", pool="gem", preprocessing=Preprocessing(resize="longest",
                                                                                          size=(size,)))
    model = PlaceModel(config, pretrained=True).eval()
    images = [Image.open(p).convert("RGB") for p in paths]
    out = {"frames": len(images), "size": size, "threads": torch.get_num_threads()}
    for engine in ("torch", "onnxruntime"):
        try:
            runner = make_runner(model, engine)
        except Exception as error:  # noqa: BLE001 - onnxruntime missing or the export refused: say so, go on
            out[engine] = {"skipped": str(error)[:120]}
            continue
        describe_image(model, images[0], runner=runner)  # warm-up
        matcher = StreamMatcher(model, StreamConfig(exclude_recent=3, sequence=length), runner=runner)
        bare = []
        for i, image in enumerate(images):
            t0 = time.perf_counter()
            describe_image(model, image, runner=runner)
            bare.append(time.perf_counter() - t0)
            matcher.process(Frame(i, float(i), paths[i].name, image))
        stream = [r.latency_ms / 1000 for r in matcher.results]
        out[engine] = {"bare_ms": percentiles(bare), "stream_ms": percentiles(stream),
                       "overhead": round(float(np.median(stream) / np.median(bare)) - 1, 3)}
    return out


def table(rows: list[dict], scores: bool = False) -> str:
    """The rows as a Markdown table; ``scores``: with a column naming each row's sequence score."""
    score_head, score_rule = ("sequence score | ", "---|") if scores else ("", "")
    lines = [f"| map size | kind | {score_head}search p50 / p99 ms | + sequence p50 / p99 ms | whole step p99 ms | "
             "add /s | train s | memory MB | sequence top-1 within ±2 |",
             f"|---:|---|{score_rule}---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        score = f"{r['score']} | " if scores else ""
        lines.append(f"| {r['size']:,} | {r['kind']} | {score}"
                     f"{r['search_ms']['p50']:.2f} / {r['search_ms']['p99']:.2f} | "
                     f"{r['search_sequence_ms']['p50']:.2f} / {r['search_sequence_ms']['p99']:.2f} | "
                     f"{r['step_ms']['p99']:.2f} | {r['add_per_s']:,} | {r['train_s']:.2f} | {r['memory_mb']:,} | "
                     f"{100 * r['sequence_hits']:.0f} % |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--frames", type=int, default=200, help="stream frames timed per size")
    parser.add_argument("--sequence", type=int, default=10, help="sequence length L")
    parser.add_argument("--size", type=int, default=320, help="describe: longest image side, pixels")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivfpq"], choices=["flat", "ivfpq"],
                        help="search kinds")
    parser.add_argument("--flat-max", type=int, default=100_000,
                        help="largest map searched exactly (exact search of 10⁶ entries takes ~2 s a frame)")
    parser.add_argument("--describe-frames", type=int, default=80,
                        help="Gardens Point frames of the describe / stream-overhead rows (0: skip them)")
    parser.add_argument("--scores", nargs="+", default=None, metavar="SCORE",
                        help="sequence scores run side by side on the same map and frames (netvlad stream "
                             "--sequence-score names; default: its default)")
    parser.add_argument("--quick", action="store_true", help="10³ and 10⁴ only, 100 frames")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    add_results_option(parser)


def fragment_name(args: argparse.Namespace) -> str:
    """``stream-speed``: the docs table of docs/place-database.md."""
    return "stream-speed"


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options."""
    from netvlad.match.sequence import STREAM_SCORES

    if unknown := [name for name in args.scores or [] if name not in STREAM_SCORES]:  # before any map is filled
        raise SystemExit(f"--scores: unknown {', '.join(unknown)}; known: {', '.join(STREAM_SCORES.names())}")
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    sizes, frames = ([1000, 10_000], 100) if args.quick else (args.sizes, args.frames)
    frames_described = 40 if args.quick else args.describe_frames
    describe = describe_times(args.size, frames_described, args.sequence) if frames_described else {"skipped": 0}
    rows = []
    for n in sizes:
        for kind in args.kinds if n <= args.flat_max else [k for k in args.kinds if k != "flat"]:
            for score in args.scores or [None]:
                rows.append(run_size(n, kind, frames, args.sequence, score=score))
                print(table(rows[-1:], bool(args.scores)).splitlines()[-1], flush=True)  # as each finishes
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} thread(s), faiss "
          f"{faiss.__version__}, torch {torch.__version__}")
    print(f"describe (MobileNetV2+GeM, longest side {args.size} px, Gardens Point): {json.dumps(describe)}")
    if args.json:
        args.json.write_text(json.dumps({"describe": describe, "rows": rows}, indent=1) + "\n")
    return f"{scheduling()}\n\n{table(rows, bool(args.scores))}"


def scheduling() -> str:
    """One sentence on how the process was scheduled: latencies on a shared machine mean little without priority."""
    import os

    fifo = hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) == getattr(os, "SCHED_FIFO", -1)
    how = "at real-time priority (`chrt -f`)" if fifo else "at normal priority"
    return (f"Per stream frame, {how}: search with `exclude_recent` (top 50) + the causal sequence step (L = 10) + "
            f"add, over N descriptor-only {DIM}-D entries; \"sequence top-1\": the share of frames whose sequence "
            "match lies within ±2 entries of the revisited one.")
