"""Sequence matching side by side in one run: single frame vs SeqSLAM-style (L = 5, 10, 20, causal and centred) vs
Delta vs SeqNet (HVPR: SeqNet shortlist, SeqSLAM re-rank) on Nordland validation (the last 400 places, winter
queries against summer), Gardens Point day_left → day_right (±2 frames) and the generated city; then the added time
per query and the peak memory of SeqSLAM-style matching over a shortlist at 10⁴ and 10⁵ database frames
(descriptor-only: generated routes, like ``python -m benchmarks scale``).

Descriptors come from ``--model CKPT`` (e.g. the Nordland recipe's ``best.safetensors``) or, without it, an
off-the-shelf MobileNetV2 + GeM; they are kept in ``--work/<dataset>`` stores and reused by later runs. SeqNet is
trained on the Nordland training places (the first 2,000) from the same descriptors.

    python -m benchmarks sequence [--quick] [--model runs/nordland/best.safetensors] [--work /tmp/seq-bench]
                                  [--sizes 10000 100000] [--dim 256 4096] [--scale-queries 1000] [--threads 1]
                                  [--sweep] [--skip nordland gardens city scale seqnet]

``--quick``: Nordland and Gardens Point only at L = 10 (causal, centred), Delta and SeqNet at L = 10, the city
skipped, scale at dim 256 with 200 query frames; minutes on a shared 2-core machine. With every dataset skipped
(``--skip nordland gardens city seqnet``) only the scale lines run, and ``--results DIR`` writes them as
``DIR/sequence-cost.md``. ``--sweep``: instead of the
table, SeqSLAM L = 10 over shortlist M × propagate P (how the defaults were chosen). The scale lines time the exact
search alone and then the matching over its shortlist, alternated three times.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import threading
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import SHARED_DATA, add_results_option, work_dir
from netvlad.data import open_dataset
from netvlad.data.sequences import SequenceOrder
from netvlad.eval.recall import describe, evaluate_descriptors
from netvlad.eval.sequence import sequence_ranking
from netvlad.match.seqnet import seqnet_encoder
from netvlad.match.seqslam import seqslam_rank
from netvlad.match.sequence import SequenceConfig
from netvlad.models import ModelConfig, PlaceModel, load
from netvlad.models.seqnet import save_seqnet
from netvlad.search.exact import exact_search
from netvlad.train.seqnet import SeqNetTraining, train_seqnet

logger = logging.getLogger("sequence")
LOG_LEVEL = logging.INFO  # progress lines, through the entry's logging set-up (benchmarks.__main__)
DATA = SHARED_DATA
NS = (1, 5, 10)


def model_from(args):
    """The checkpoint, or MobileNetV2 + GeM off the shelf (Nordland's 128×256 input)."""
    if args.model:
        return load(args.model), Path(args.model).name
    import dataclasses

    config = ModelConfig(backbone="mobilenet_v2", pool="gem")  # as `netvlad evaluate --pool gem --resize fixed`
    config = dataclasses.replace(config, preprocessing=dataclasses.replace(config.preprocessing, resize="fixed",
                                                                           size=(128, 256)))
    return PlaceModel(config).eval(), "mobilenet_v2+gem (off-the-shelf, 128×256)"


def descriptors(model, dataset, store: Path):
    """(db, queries) descriptors of ``dataset`` kept in ``store``."""
    db, _, _ = describe(model, dataset.database, store / "database", batch_size=16)
    q, _, _ = describe(model, dataset.queries, store / "queries", batch_size=16)
    return db, q


def methods(quick: bool) -> list[tuple[str, SequenceConfig]]:
    """The rows of the table: (method, config)."""
    lengths = (10,) if quick else (5, 10, 20)
    rows = [("seqslam", SequenceConfig(length=n, centred=c)) for n in lengths for c in (False, True)]
    return rows + [("delta", SequenceConfig(length=10)), ("delta", SequenceConfig(length=10, centred=True)),
                   ("seqnet", SequenceConfig(length=10))]


def table_rows(name, dataset, db, q, quick, encoder) -> list[dict]:
    """Single frame and every method on one dataset, timed."""
    single = evaluate_descriptors(db, q, dataset.positives(), NS, k=50)
    rows = [{"dataset": name, "method": "single frame", "L": 1, "mode": "-", "recall": single.recall,
             "ms_per_query": None}]
    for method, config in methods(quick):
        if method == "seqnet" and encoder is None:
            continue
        longest = max(len(m) for m in dataset.queries.sequence.members())
        if config.length > longest:
            continue
        start = time.perf_counter()
        result = sequence_ranking(method, db, q, dataset, single, config, NS, encoder=encoder)
        ms = 1000 * (time.perf_counter() - start) / len(q)
        rows.append({"dataset": name, "method": method, "L": config.length, "mode": config.mode,
                     "recall": result.recall, "ms_per_query": ms,
                     "shortened": result.summary()["shortened_windows"], "shifted": result.shifted})
        logger.info("%s %s: %s (%.1f ms/query)", name, result.label, result.recall, ms)
    return rows


def nordland(args, model, work: Path) -> list[dict]:
    """Nordland val (last 400 places), with a SeqNet trained on the first 2,000."""
    data = open_dataset(DATA / "nordland", database="summer", queries="winter")
    train, val = data.split_by_frames(400)
    if "seqnet" in args.skip:  # only the validation places are described
        db, q = descriptors(model, val, work / "nordland-val")
        return table_rows("nordland val", val, np.asarray(db), np.asarray(q), args.quick, None)
    db, q = descriptors(model, data, work / "nordland")
    cut = len(train.database)
    start = time.perf_counter()
    config = SeqNetTraining(length=10, output_dim=256 if args.quick else 512, epochs=3 if args.quick else 8,
                            epoch_queries=1000 if args.quick else 2000,
                            pca_dim=512 if db.shape[1] > 4096 else 0)  # NetVLAD's 20,480-D: PCA first
    seqnet, log = train_seqnet(np.asarray(db[:cut]), np.asarray(q[:cut]), train, config)
    logger.info("SeqNet trained in %.0f s: %s", time.perf_counter() - start, log)
    save_seqnet(seqnet, work / "seqnet.safetensors", {"log": log})  # for `netvlad evaluate --sequence-model`
    return table_rows("nordland val", val, np.asarray(db[cut:]), np.asarray(q[cut:]), args.quick,
                      seqnet_encoder(seqnet))


def gardens_point(args, model, work: Path) -> list[dict]:
    """Gardens Point day_left → day_right, ±2 frames (no SeqNet: 200 frames are too few to train one)."""
    data = open_dataset(DATA / "gardens_point", database="day_left", queries="day_right", frame_tolerance=2)
    db, q = descriptors(model, data, work / "gardens_point")
    return table_rows("gardens point", data, np.asarray(db), np.asarray(q), args.quick, None)


def city(args, model, work: Path) -> list[dict]:
    """The generated city (small preset, test split): street drives as sequences, queries sampled with gaps."""
    from netvlad.data.synthetic import CityConfig, generate_city

    root = generate_city(CityConfig.preset("small"), work / "city", workers=1)
    data = open_dataset(root, split="test")
    db, q = descriptors(model, data, work / "city-store")
    return table_rows("generated city", data, np.asarray(db), np.asarray(q), args.quick, None)


def sweep(args, model, work: Path) -> list[dict]:
    """SeqSLAM L = 10 causal over shortlist M × propagate P on Nordland val and Gardens Point (how the defaults
    were chosen): Recall@N and time per query."""
    data = open_dataset(DATA / "nordland", database="summer", queries="winter")
    _, val = data.split_by_frames(400)
    db, q = descriptors(model, data, work / "nordland")
    cut = len(data.database) - len(val.database)
    gardens = open_dataset(DATA / "gardens_point", database="day_left", queries="day_right", frame_tolerance=2)
    sets = [("nordland val", val, np.asarray(db[cut:]), np.asarray(q[cut:])),
            ("gardens point", gardens, *map(np.asarray, descriptors(model, gardens, work / "gardens_point")))]
    rows = []
    for name, dataset, db, q in sets:
        single = evaluate_descriptors(db, q, dataset.positives(), NS, k=50)
        for m, p in [(m, p) for m in (10, 20, 50) for p in (0, 2, 5)]:
            config = SequenceConfig(length=10, shortlist=m, propagate=p)
            start = time.perf_counter()
            result = sequence_ranking("seqslam", db, q, dataset, single, config, NS)
            rows.append({"dataset": name, "method": f"seqslam M={m} P={p}", "L": 10, "mode": "causal",
                         "recall": result.recall, "ms_per_query": 1000 * (time.perf_counter() - start) / len(q),
                         "shortened": result.summary()["shortened_windows"], "shifted": result.shifted})
    return rows


class PeakRSS:
    """Peak resident memory (bytes) above the level at entry, sampled every millisecond (torch's allocations are
    invisible to tracemalloc)."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()

    def _watch(self) -> None:
        while not self.done.wait(0.001):
            self.peak = max(self.peak, self._rss())

    @property
    def added_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def scale(n: int, dim: int, queries: int, seed: int = 0, repeats: int = 3) -> dict:
    """Exact search of ``queries`` query frames against a generated route of ``n`` frames, alone and followed by
    SeqSLAM-style matching over its shortlist, alternated ``repeats`` times (fastest of each kept), and the peak
    memory the matching adds."""
    rng = np.random.default_rng(seed)
    db = rng.standard_normal((n, dim), dtype=np.float32)  # float32 throughout: 10⁵ × 4096 is 1.6 GB
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    start_frame = n // 3
    q = db[start_frame:start_frame + queries] + 1.5 * rng.standard_normal((queries, dim), dtype=np.float32) / dim**0.5
    order = SequenceOrder.single(np.arange(queries))
    search_s, sequence_s, peak = [], [], 0.0
    for _ in range(repeats):  # this thread's CPU time (1 thread: faiss, BLAS and torch run on it), as the machine
        start = time.thread_time()  # may be shared
        _, shortlist = exact_search(db, q, SequenceConfig().shortlist)
        search_s.append(time.thread_time() - start)
        with PeakRSS() as memory:
            start = time.thread_time()
            ranking = seqslam_rank(q, db, order, None, shortlist, SequenceConfig())
            sequence_s.append(time.thread_time() - start)
        peak = max(peak, memory.added_mib)
    truth = np.arange(start_frame, start_frame + queries)
    return {"n": n, "dim": dim, "queries": queries, "search_ms_per_query": 1000 * min(search_s) / queries,
            "sequence_ms_per_query": 1000 * min(sequence_s) / queries,
            "added_percent": 100 * min(sequence_s) / min(search_s), "sequence_peak_mib": peak,
            "single_r1": float((shortlist[:, 0] == truth).mean() * 100),
            "sequence_r1": float((ranking.ranked[:, 0] == truth).mean() * 100)}


def print_tables(rows: list[dict], scales: list[dict]) -> None:
    print("| dataset | method | L | mode | R@1 | R@5 | R@10 | ms/query | shortened (shifted) |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ms = "-" if r["ms_per_query"] is None else f"{r['ms_per_query']:.1f}"
        windows = f"{r.get('shortened', '-')}" + (f" ({r['shifted']})" if r.get("shifted") else "")
        print(f"| {r['dataset']} | {r['method']} | {r['L']} | {r['mode']} | "
              + " | ".join(f"{r['recall'][n]:.1f}" for n in NS) + f" | {ms} | {windows} |")
    print("\n" + "\n".join(scale_lines(scales)))


def scale_lines(scales: list[dict]) -> list[str]:
    """The scale lines as a Markdown table: exact search, then what SeqSLAM-style matching adds to it."""
    lines = ["| database frames | dim | query frames | exact search ms/query | + SeqSLAM ms/query | added | "
             "SeqSLAM peak MiB | single R@1 | SeqSLAM R@1 |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in scales:
        lines.append(f"| {s['n']:,} | {s['dim']} | {s['queries']} | {s['search_ms_per_query']:.2f} | "
                     f"{s['sequence_ms_per_query']:.2f} | {s['added_percent']:.0f} % | {s['sequence_peak_mib']:.1f} | "
                     f"{s['single_r1']:.1f} | {s['sequence_r1']:.1f} |")
    return lines


def only_scale(args: argparse.Namespace) -> bool:
    """Whether every dataset step is skipped: the run measures the scale lines alone."""
    return not args.sweep and "scale" not in args.skip and {"nordland", "gardens", "city", "seqnet"} <= set(args.skip)


def fragment_name(args: argparse.Namespace) -> str:
    """The docs fragment ``--results`` writes: ``sequence-cost`` for the scale lines alone."""
    return "sequence-cost" if only_scale(args) else "sequence"


def cost_table(scales: list[dict]) -> str:
    """The scale lines as the docs' Markdown fragment: what SeqSLAM-style matching adds to exact search."""
    c = SequenceConfig()
    lines = [f"Random L2-normalised descriptors along a generated route; exact search of the query frames (their "
             f"shortlist of {c.shortlist}) alone, then SeqSLAM L = {c.length} causal (velocities "
             f"{', '.join(f'{v:g}' for v in c.velocities)}, ±{c.contrast_radius} frames, {c.propagate} carried) over "
             "it, alternated three times, the fastest of each kept (this thread's CPU time); peak: resident memory "
             "added by the sequence step:", "", *scale_lines(scales)]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--quick", action="store_true", help="fewer rows, no city, small scale runs (minutes)")
    parser.add_argument("--model", default=None, help="checkpoint (default: MobileNetV2 + GeM off the shelf)")
    parser.add_argument("--work", type=Path, default=work_dir("sequence"), help="stores, city")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="database frames")
    parser.add_argument("--dim", type=int, nargs="+", default=None,
                        help="scale descriptors' dims (default 256 and 4096; quick 256)")
    parser.add_argument("--scale-queries", type=int, nargs="+", default=None,
                        help="query frames of the scale runs, one for every --dim or one for all (default 1000; "
                             "quick 200)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sweep", action="store_true", help="instead of the table: SeqSLAM L = 10 over shortlist "
                                                             "M × propagate P (Nordland val, Gardens Point)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("nordland", "gardens", "city", "scale", "seqnet"),
                        help="steps to leave out (seqnet: no SeqNet, so only Nordland's validation places are "
                             "described)")
    add_results_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with the parsed options."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, label = (None, "none (generated descriptors)") if only_scale(args) else model_from(args)
    rows: list[dict] = []
    steps = [("nordland", nordland), ("gardens", gardens_point)] + ([] if args.quick else [("city", city)])
    steps = [("sweep", sweep)] if args.sweep else steps
    for name, step in steps:
        if name not in args.skip:
            rows += step(args, model, args.work)
    dims = args.dim or ([256] if args.quick else [256, 4096])
    queries = args.scale_queries or [200 if args.quick else 1000]
    if len(queries) not in (1, len(dims)):
        raise SystemExit(f"--scale-queries: give one count or one for each of the {len(dims)} dims")
    queries = dict(zip(dims, queries * len(dims) if len(queries) == 1 else queries, strict=True))
    scales = [] if "scale" in args.skip else [scale(n, d, queries[d]) for d in dims for n in args.sizes]
    if only_scale(args):
        return cost_table(scales)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model: {label}; threads {args.threads}; peak RSS {rss:.0f} MiB")
    print_tables(rows, scales)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "results.json").write_text(json.dumps({"model": label, "rows": rows, "scale": scales}, indent=1,
                                                       default=str))
    return 0
