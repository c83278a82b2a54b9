"""How every cost grows with the database: ground truth, store writing, exact streamed search, ANN, mining.

For each N in ``--sizes`` it writes N generated ``--dim``-D descriptors (real MobileNetV2-NetVLAD descriptors,
PCA-whitened, expanded with place-like perturbations: see ``scale_data``) to a float16 DescriptorStore under
``--work``, and times, each step in a fresh process whose peak RSS is recorded:

- ``groundtruth``: 25 m radius positives of ``--queries`` queries among N generated positions (KD-tree);
- ``write``: generating and writing the store (float16, flushed chunk by chunk);
- ``exact``: streamed exact search of the queries (top 10) within ``--max-memory`` GiB, and, where the float32
  database fits in ``--in-ram-limit`` GiB, faiss's in-RAM flat search of the same queries, side by side;
- ``ivfpq`` / ``opq-ivfpq`` / ``hnsw``: train on a sample, add in chunks, search with the default settings;
  their recall against exact search (exact top-1 in the approximate top-1 / top-10) and the index bytes;
- ``mining``: one hard-negative mining pass of the training cache (the queries against all N, as the loop does).

``--big NxD`` adds the Pittsburgh-sized exact case (250000x32768: 16 GiB of float16 on disk; raw descriptors
cropped to D dims, not whitened) through ``evaluate_descriptors`` on the memory map. It prints the table, writes
``results.json`` in ``--work`` and, over several sizes, a log-log plot (``--plot``). ``--keep`` keeps the stores
(deleted otherwise). With ``--results DIR`` the table goes to ``scale-growth.md`` (several sizes),
``scale-<dim>.md`` (one size) or ``scale-pittsburgh.md`` (``--big`` alone).

    python -m benchmarks scale [--quick] [--sizes 10000 100000 1000000] [--dim 4096] [--queries 1000]
                               [--big 250000x32768] [--max-memory 3] [--threads 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from benchmarks import scale_steps
from benchmarks.common import ENV, REPO, add_results_option, work_dir

logger = logging.getLogger("scale")
LOG_LEVEL = logging.INFO  # progress lines, through the entry's logging set-up (benchmarks.__main__)
ANN_KINDS = ("ivfpq", "opq-ivfpq", "hnsw")


def in_child(function, *args):
    """Run ``scale_steps.function(*args)`` in a fresh process: its result dict plus ``rss`` (peak bytes)."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=scale_steps.setup,
                             initargs=(THREADS,)) as pool:
        return pool.submit(scale_steps.measured, function, *args).result()


THREADS = 2


def run_size(args, n: int, dim: int, base: Path, work: Path) -> list[dict]:
    """Every step at one database size; returns the table rows."""
    folder = work / f"n{n}"
    rows = [dict(n=n, step="groundtruth", **in_child("groundtruth", n, args.queries))]
    rows.append(dict(n=n, step="write", **in_child("write_store", str(base), str(folder), n, args.queries)))
    budget = args.max_memory * 1024**3
    rows.append(dict(n=n, step="exact", **in_child("exact", str(folder), budget)))
    exact = rows[-1]
    if n * dim * 4 <= args.in_ram_limit * 1024**3:
        rows.append(dict(n=n, step="in-RAM flat", **in_child("in_ram", str(folder))))
        exact["notes"] += f"; {exact['pair_ns'] / rows[-1]['pair_ns']:.2f}× in-RAM flat's time per pair"
    for kind in ANN_KINDS:
        if n <= getattr(args, f"{kind.replace('-', '_')}_max"):
            rows.append(dict(n=n, step=kind, **in_child("ann", str(folder), kind, budget)))
            rows[-1]["notes"] += f"; search {exact['seconds'] / rows[-1]['search_s']:.0f}× faster than exact"
            if "search_rr_s" in rows[-1]:  # the default: PQ search of the top 100 + exact re-rank
                rows[-1]["notes"] += f", {exact['seconds'] / rows[-1]['search_rr_s']:.0f}× with the re-rank"
    rows.append(dict(n=n, step="mining", **in_child("mining", str(folder))))
    if not args.keep:
        shutil.rmtree(folder)
    return rows


def run_big(args, base: Path, work: Path) -> list[dict]:
    n, dim = (int(v) for v in args.big.lower().split("x"))
    folder = work / f"big{n}x{dim}"
    queries = args.big_queries or args.queries
    rows = [dict(n=n, step=f"write {dim}-D", **in_child("write_store", str(base), str(folder), n, queries))]
    rows.append(dict(n=n, step=f"exact {dim}-D", **in_child("exact_recall", str(folder), args.max_memory * 1024**3)))
    if not args.keep:
        shutil.rmtree(folder)
    return rows


def table(rows: list[dict]) -> str:
    """The growth table as Markdown."""
    lines = ["| N | step | seconds | peak RSS GiB | notes |", "|---:|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['step']} | {r['seconds']:.1f} | {r['rss'] / 1024**3:.2f} | "
                     f"{r.get('notes', '')} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=80)
    steps = [s for s in dict.fromkeys(r["step"] for r in rows) if "-D" not in s]
    for step in steps:
        pts = sorted((r["n"], r["seconds"], r["rss"] / 1024**3) for r in rows if r["step"] == step)
        if len(pts) < 2:
            continue
        n, t, m = zip(*pts, strict=True)
        ax_t.loglog(n, t, "o-", label=step)
        ax_m.loglog(n, m, "o-", label=step)
    ax_t.set(xlabel="database vectors N", ylabel="seconds", title="time")
    ax_m.set(xlabel="database vectors N", ylabel="peak RSS (GiB)", title="memory")
    ax_m.legend(fontsize=7, loc="upper left")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=4096, help="whitened descriptor dim of the growth table")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--big", default="250000x32768", help="NxD of the exact streamed case ('' to skip)")
    parser.add_argument("--big-queries", type=int, default=None, help="queries of the --big case (default --queries)")
    parser.add_argument("--max-memory", type=float, default=3.0, help="GiB for exact search and index building")
    parser.add_argument("--in-ram-limit", type=float, default=2.0, help="GiB: in-RAM flat search up to this size")
    parser.add_argument("--opq-ivfpq-max", type=int, default=100_000, help="largest N for OPQ (its rotation is slow)")
    parser.add_argument("--ivfpq-max", type=int, default=10**9)
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="largest N for HNSW (float32 in RAM)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=work_dir("scale-run"),
                        help=f"scratch folder (default: under ${ENV}, else the system's temp dir)")
    parser.add_argument("--cache", type=Path, default=work_dir("scale-cache"), help="real descriptors")
    parser.add_argument("--cities", type=Path, nargs=3, default=[work_dir("scale-city", c)
                                                                 for c in ("city", "city1", "city2")])
    parser.add_argument("--plot", type=Path, default=REPO / "docs/images/scale.png")
    parser.add_argument("--quick", action="store_true", help="small sizes in a minute or two (a smoke run)")
    parser.add_argument("--keep", action="store_true", help="keep the generated stores")
    parser.add_argument("--include", type=Path, nargs="*", default=[],
                        help="results.json of earlier runs (e.g. --big alone) to show in the table and plot too")
    add_results_option(parser)


def fragment_name(args: argparse.Namespace) -> str:
    """The docs table this run writes: ``scale-growth`` (several sizes), ``scale-<dim>`` (one size) or
    ``scale-pittsburgh`` (``--big`` alone)."""
    if not args.sizes:
        return "scale-pittsburgh"
    return f"scale-{args.dim}" if len(args.sizes) == 1 else "scale-growth"


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options."""
    global THREADS
    if args.quick:
        args.sizes, args.dim, args.queries, args.big = [2000, 20_000], 512, 200, "20000x4096"
    THREADS = args.threads
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows: list[dict] = [row for path in args.include for row in json.loads(path.read_text())]

    def save(new: list[dict]) -> None:  # after every size, so that a run cut short keeps what it measured
        rows.extend(new)
        (args.work / "results.json").write_text(json.dumps(rows, indent=1, default=float))
        logger.info("measured:\n%s", table(new))

    cities = [str(c) for c in args.cities]
    if args.big:
        big_dim = int(args.big.lower().split("x")[1])
        big_base = in_child("prepare_base", str(args.cache), cities, str(args.work), big_dim, True)["path"]
        save(run_big(args, Path(big_base), args.work))
    base = in_child("prepare_base", str(args.cache), cities, str(args.work), args.dim)["path"] if args.sizes else ""
    for n in args.sizes:
        save(run_size(args, n, args.dim, Path(base), args.work))
    print(f"\n{args.dim}-D whitened descriptors (--big: raw), float16 store, {args.queries} queries, {args.threads} "
          f"threads, --max-memory {args.max_memory} GiB ({time.perf_counter() - start:.0f} s in all)\n")
    if len({r["n"] for r in rows if "-D" not in r["step"]}) > 1:  # growth rows, measured now or --include'd
        plot(rows, args.plot)
        print(f"\nwrote {args.plot}")
    print(f"wrote {args.work / 'results.json'}")
    return table(rows)
