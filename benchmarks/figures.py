"""Re-measure the README's tables and print them in the README's format, each with the command that made it.

Every figure comes from the ``netvlad`` command itself, run in a fresh process (so ``--deterministic`` pins the
kernels before torch loads), at 1 torch thread:

* the demo table: ``netvlad demo --threads 1 --seed N`` for each ``--seeds`` (seed 0 is the table's left half, the
  mean ± sample sd over the seeds its right half; about 5 minutes per seed on an idle core, longer when shared);
* the Gardens Point rows of docs/figures.md: ``netvlad evaluate`` with f_max, GeM and k-means NetVLAD on
  day_left → day_right (±2 frames), and the benchmark protocol row (``--protocol gardens-point``).

Runs are resumable: the demo skips its finished steps and an evaluation whose JSON exists is read back, so a
second call with the same ``--out`` only prints (``--force`` measures again).

    python -m benchmarks figures [--only demo|gardens-point] [--seeds 0 1 2] [--out DIR] [--force]
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--only", choices=("demo", "gardens-point"), help="one table (default: both)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="demo seeds (default: 0)")
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: the benchmark folder)")
    parser.add_argument("--force", action="store_true", help="measure again what was measured before")
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options (with ``--only``, the one table without a heading: a docs fragment)."""
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
