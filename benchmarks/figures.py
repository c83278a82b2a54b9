"""Re-measure the README's tables and print them in the README's format, each with the command that made it.

Every figure comes from the ``netvlad`` command itself, run in a fresh process (so ``--deterministic`` pins the
kernels before torch loads), at 1 torch thread:

* the demo table: ``netvlad demo --threads 1 --seed N`` for each ``--seeds`` (seed 0 is the table's left half, the
  mean ± sample sd over the seeds its right half; about 5 minutes per seed on an idle core, longer when shared);
* the Gardens Point rows of docs/figures.md: ``netvlad evaluate`` with f_max, GeM and k-means NetVLAD on
  day_left → day_right (±2 frames), and the benchmark protocol row (``--protocol gardens-point``).

Runs are resumable: the demo skips its finished steps and an evaluation whose JSON exists is read back, so a
second call with the same ``--out`` only prints (``--force`` measures again).

``--picture NAME`` measures nothing: it draws a docs picture from the table of the fragment the measuring benchmark
wrote, so the picture shows the numbers of the table beside it (rerun it after the fragment is regenerated):
``engine-speed`` (images per second per engine and batch, ``docs/results/engine-pipeline.md`` of ``python -m
benchmarks engine``) and ``cpu-chunk`` (milliseconds per image against images per call, ``docs/results/cpu-chunk.md``
of ``python -m benchmarks cpu-chunk``), both on docs/engine.md; ``reranking`` (Gardens Point queries re-ranked with
the defaults ``docs/results/reranking-defaults.md`` chose, from the photos and the stores ``netvlad benchmark --suite
reranking`` left in ``--cache``), on docs/reranking.md.

    python -m benchmarks figures [--only demo|gardens-point] [--seeds 0 1 2] [--out DIR] [--force]
    python -m benchmarks figures --picture engine-speed|cpu-chunk|reranking [--fragments docs/results] [--png PATH]
        [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.common import REPO, SHARED_DATA, add_results_option, work_dir
from benchmarks.reranking_picture import draw_reranking

DATA = SHARED_DATA / "gardens_point"
NETVLAD = [sys.executable, "-m", "netvlad.cli.main"]
DEMO_ROWS = {  # the report's labels -> the README's
    "f_max (off-the-shelf)": "f_max (ImageNet MobileNetV2, off the shelf)",
    "GeM (off-the-shelf)": "GeM (off the shelf)",
    "NetVLAD k-means (off-the-shelf)": "NetVLAD K=16, k-means initialised (off the shelf)",
    "NetVLAD trained": "**NetVLAD, trained** (the paper's loss and mining)",
    "NetVLAD trained + whitening": "NetVLAD, trained + PCA whitening",
}
POOLINGS = {"max": "f_max", "gem": "GeM", "netvlad": "NetVLAD, k-means on the database (K=64)"}
NS = ("1", "5", "10")


def shown(argv: list[str]) -> str:
    """The command as a user types it (``netvlad …``, data paths relative to the repository)."""
    words = ["netvlad", *argv]
    return " ".join(shlex.quote(w.replace(str(REPO.parent), "..")) for w in words)


def netvlad(argv: list[str]) -> None:
    """Run ``netvlad ARGV`` in a fresh process of this interpreter, with this checkout's sources first."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print(f"$ {shown(argv)}", file=sys.stderr, flush=True)
    subprocess.run([*NETVLAD, *argv], env=env, check=True, cwd=REPO)


def demo(out: Path, seeds: list[int], force: bool) -> str:
    """The README's demo table: seed ``seeds[0]`` and the mean ± sd over ``seeds``."""
    runs = []
    for seed in seeds:
        argv = ["demo", "--threads", "1", "--seed", str(seed), "--out", str(out / f"demo-seed{seed}"),
                "--no-progress", *(["--force"] if force else [])]
        netvlad(argv)
        runs.append(json.loads((out / f"demo-seed{seed}" / "report" / "results.json").read_text())["methods"])
    several = len(seeds) > 1  # the mean ± sd columns need two seeds at least
    header = ["| method | dim | R@1 | R@5 | R@10 |" + "".join(f" R@{n}, {len(seeds)} seeds |" for n in NS if several),
              "|---|---:|---:|---:|---:|" + "---:|" * len(NS) * several]
    lines = []
    for label, row in DEMO_ROWS.items():
        first = runs[0][label]
        values = [f"{first['recall'][n]:.1f}" for n in NS]
        spread = []
        for n in NS:
            recalls = [run[label]["recall"][n] for run in runs]
            sd = statistics.stdev(recalls) if len(recalls) > 1 else 0.0
            spread.append(f"{statistics.mean(recalls):.1f} ± {sd:.1f}")
        bold = row.startswith("**")
        cells = [f"**{v}**" if bold else v for v in values + (spread if len(seeds) > 1 else [])]
        lines.append(f"| {row} | {first['descriptor_dim']} | " + " | ".join(cells) + " |")
    command = shown(["demo", "--threads", "1", "--seed", "N"]) + f"   (N = {' '.join(map(str, seeds))})"
    return "\n".join([command, "", *header, *lines])


def evaluation(out: Path, name: str, argv: list[str], force: bool) -> tuple[dict, str]:
    """Recall@N (percent, by N) of one ``netvlad evaluate`` run, and the command that gave it."""
    result = out / f"{name}.json"
    full = ["evaluate", *argv, "--threads", "1", "--workers", "0", "--no-progress", "--no-pictures"]
    if force or not result.is_file():
        netvlad([*full, "--output", str(result)])
    return json.loads(result.read_text())["recall"], shown(full)


def gardens_point(out: Path, force: bool) -> str:
    """docs/figures.md's Gardens Point tables: three poolings at longest side 480, and the benchmark protocol."""
    data = [str(DATA), "--database", "day_left", "--queries", "day_right", "--frame-tolerance", "2"]
    lines = ["| pooling | R@1 | R@5 | R@10 | command |", "|---|---:|---:|---:|---|"]
    for pool, label in POOLINGS.items():
        recall, command = evaluation(out, f"gp-{pool}", [*data, "--pool", pool, "--size", "480", "--engine",
                                                          "torch"], force)
        lines.append(f"| {label} | " + " | ".join(f"{recall[n]:.1f}" for n in NS) + f" | `{command}` |")
    recall, command = evaluation(out, "gp-protocol-gem", [str(DATA), "--protocol", "gardens-point", "--pool", "gem",
                                                          "--engine", "torch"], force)
    protocol = f"`{command}`: R@1/5/10 = " + " / ".join(f"{recall[n]:.1f}" for n in NS)
    return "\n".join([*lines, "", protocol])


def fragment_table(path: Path) -> list[dict[str, str]]:
    """The first Markdown table of a docs fragment: one ``{column: cell}`` per row."""
    rows = [line.strip().strip("|").split("|") for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("|")]
    if len(rows) < 3:
        raise SystemExit(f"{path}: no Markdown table to draw")
    header = [cell.strip() for cell in rows[0]]
    return [dict(zip(header, (cell.strip() for cell in row), strict=True)) for row in rows[2:]]


def engine_speeds(rows: list[dict[str, str]]) -> dict[str, dict[str, tuple[float, float]]]:
    """``{model at input: {batch: (torch, onnxruntime) images per second}}`` from engine-pipeline.md's rows (one
    per model, input, threads and batch; the first thread count's rows)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    threads = rows[0]["threads"] if rows else None
    for row in rows:
        if row["threads"] == threads:
            speeds = (float(row["torch img/s"]), float(row["onnxruntime img/s"]))
            out.setdefault(f"{row['model']} at {row['input']}", {})[row["batch"]] = speeds
    return out


def draw_engine_speed(fragment: Path, png: Path) -> Path:
    """Images per second of torch and onnxruntime per batch size, one panel per model and input, from the
    fragment's table; -> the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from netvlad.files import save_figure

    speeds = engine_speeds(fragment_table(fragment))
    columns = 2
    rows = (len(speeds) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(7.5, 2.6 * rows), dpi=110, squeeze=False)
    for ax, (label, batches) in zip(axes.flat, speeds.items(), strict=False):  # spare panels hidden below
        x = np.arange(len(batches))
        for offset, engine, colour in ((-0.2, 0, "#7f7f7f"), (0.2, 1, "#1f77b4")):
            values = [pair[engine] for pair in batches.values()]
            ax.bar(x + offset, values, 0.4, color=colour, label=("torch", "onnxruntime")[engine])
            for xi, value in zip(x + offset, values, strict=True):
                ax.annotate(f"{value:.1f}", (xi, value), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, [f"batch {b}" for b in batches])
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("images / s")
        ax.margins(y=0.15)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(speeds):]:
        ax.set_visible(False)
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="upper right", fontsize=8, ncols=2)
    fig.suptitle(f"Whole pipeline, images per second ({fragment.name})", fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure(fig, png)


def draw_cpu_chunk(fragment: Path, png: Path) -> Path:
    """Milliseconds per image against images per call, eager and traced, one panel per model, input and thread
    count, with the plain NCHW model (one image a call) marked; from the fragment's table (cells not run: skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from netvlad.files import save_figure

    rows = fragment_table(fragment)
    columns = min(4, len(rows))
    lines = (len(rows) + columns - 1) // columns
    fig, axes = plt.subplots(lines, columns, figsize=(2.6 * columns, 2.6 * lines + 0.4), dpi=110, squeeze=False)
    for ax, row in zip(axes.flat, rows, strict=False):  # spare panels hidden below
        ticks = set()
        for path, colour in (("eager", "#7f7f7f"), ("traced", "#1f77b4")):
            chunks = [(int(c.split()[1]), float(v.split()[0])) for c, v in row.items()
                      if c.startswith(f"{path} ") and v not in ("–", "")]
            ticks.update(chunk for chunk, _ in chunks)
            ax.plot(*zip(*chunks, strict=True), "o-", color=colour, label=f"{path} (folded, channels_last)")
        ax.axhline(float(row["nchw, 1 a call (ms/image)"]), color="#d62728", ls="--", lw=1, label="NCHW, 1 a call")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks), [str(tick) for tick in sorted(ticks)])
        thread = f"{row['threads']} thread" + ("" if row["threads"] == "1" else "s")
        ax.set(xlabel="images per call", title=f"{row['model']}, {row['input']}, {thread}")
        ax.title.set_fontsize(7)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(rows):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("ms per image")
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="lower center", fontsize=7, ncols=3)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return save_figure(fig, png)


PICTURES = {"engine-speed": ("engine-pipeline.md", "engine_speed.png", draw_engine_speed),
            "cpu-chunk": ("cpu-chunk.md", "cpu_chunk.png", draw_cpu_chunk),
            "reranking": ("reranking-defaults.md", "reranking.jpg", draw_reranking)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--only", choices=("demo", "gardens-point"), help="one table (default: both)")
    parser.add_argument("--picture", choices=sorted(PICTURES),
                        help="draw this docs picture from its fragment's table instead (measures nothing)")
    parser.add_argument("--fragments", type=Path, default=REPO / "docs" / "results",
                        help="--picture: the folder of the fragment it reads (default: docs/results)")
    parser.add_argument("--png", type=Path, help="--picture: where it goes (default: docs/images/<name>.png)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="--picture reranking: the cache of netvlad benchmark --suite reranking (default: the "
                             "benchmark's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="demo seeds (default: 0)")
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: the benchmark folder)")
    parser.add_argument("--force", action="store_true", help="measure again what was measured before")
    add_results_option(parser)


def run(args: argparse.Namespace) -> str | None:
    """Run the benchmark with the parsed options (with ``--only``, the one table without a heading: a docs fragment;
    with ``--picture``, the picture drawn and nothing measured)."""
    if args.picture:
        if args.results is not None or args.only:
            raise SystemExit("--picture draws from an existing fragment: drop --results and --only")
        fragment, png, draw = PICTURES[args.picture]
        options = {"cache": args.cache} if args.picture == "reranking" else {}
        if args.cache is not None and not options:
            raise SystemExit(f"--cache is for --picture reranking; --picture {args.picture} reads only its fragment")
        print(f"wrote {draw(args.fragments / fragment, args.png or REPO / 'docs' / 'images' / png, **options)}")
        return None
    out = args.out or work_dir("figures")
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    if args.only in (None, "gardens-point"):
        parts += ["## Gardens Point (day_left → day_right, ±2 frames; offline ImageNet MobileNetV2, torch engine)",
                  gardens_point(out, args.force)]
    if args.only in (None, "demo"):
        parts += ["## The demo (1 torch thread, deterministic kernels)", demo(out, args.seeds, args.force)]
    return "\n\n".join(parts[1::2] if args.only else parts)


def fragment_name(args: argparse.Namespace) -> str:
    """``figures-<table>`` with ``--only`` (each table is its own docs fragment), else ``figures``."""
    return f"figures-{args.only}" if args.only else "figures"
