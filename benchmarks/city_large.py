"""A generated city end to end through the ``netvlad`` command, as a user with two cores would run it: generate,
train on two torchrun ranks, extract with the k-means model in two shards at once, evaluate both models.

Every step is a subprocess in a temporary folder outside the repository (deleted after, unless ``--keep``); each
is measured by the kernel's accounting of the process tree (``os.wait4``): wall time, CPU time (user + system) and
the peak resident memory of its largest process. The table is the one docs/workflows/distributed.md includes.
``--size tiny`` runs the same steps in seconds (the test).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import REPO, add_results_option

RECALLS = ("1", "5", "10", "20")
TIME = "/usr/bin/time"  # GNU time: CPU and peak memory of one process tree


@dataclass(frozen=True)
class Usage:
    """One process tree's wall seconds, CPU seconds (user + system) and peak resident bytes of its largest process."""

    wall: float
    cpu: float
    peak: int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", default="large", choices=("tiny", "small", "default", "large"),
                        help="`netvlad generate --size` (default large: 20,961 images; tiny: the test, seconds)")
    parser.add_argument("--epoch-queries", type=int, default=1000, help="training queries (default 1000)")
    parser.add_argument("--clusters", type=int, default=16, help="NetVLAD clusters K (default 16)")
    parser.add_argument("--lr", type=float, default=2e-4, help="learning rate (default 2e-4)")
    parser.add_argument("--whitening-dim", type=int, default=512,
                        help="PCA whitening of the trained model (default 512; needs more database images)")
    parser.add_argument("--engine", default="auto", choices=("auto", "onnxruntime", "torch"),
                        help="extract's and evaluate's --engine (default auto)")
    parser.add_argument("--seed", type=int, default=0, help="city seed (default 0)")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="work in DIR and keep it (default: a temporary folder, deleted after)")
    parser.add_argument("--threads", type=int, default=1, help="threads per process (default 1)")
    add_results_option(parser)


def _environment(threads: int) -> dict:
    env = dict(os.environ)
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else src
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    return env


def measure(commands: list[list[str]], env: dict, log: Path) -> list[Usage]:
    """Run ``commands`` at once (their output appended to ``log``) -> each one's :class:`Usage`; a failed command
    raises with the log's last lines.

    Each runs under ``/usr/bin/time``, a small process: a command forked from this one (torch loaded) would report
    this process's memory as its own peak."""
    start = time.perf_counter()
    with open(log, "ab") as out:
        reports = [log.with_name(f"{log.stem}-time{i}.txt") for i in range(len(commands))]
        procs = [subprocess.Popen([TIME, "-f", "%U %S %M", "-o", str(report), *command], env=env, stdout=out,
                                  stderr=subprocess.STDOUT) for command, report in zip(commands, reports, strict=True)]
        walls = []
        for proc, command in zip(procs, commands, strict=True):
            proc.wait()
            walls.append(time.perf_counter() - start)
            if proc.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}); the end of {log}:\n{tail}")
    usages = []
    for wall, report in zip(walls, reports, strict=True):
        user, system, peak = report.read_text().split()[-3:]
        usages.append(Usage(wall, float(user) + float(system), int(peak) * 1024))
        report.unlink()
    return usages


def duration(seconds: float) -> str:
    """``7 min 33 s``, or ``41 s`` under a minute."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def recall(report: Path) -> str:
    values = json.loads(report.read_text(encoding="utf-8"))["recall"]
    return " / ".join(f"{values[n]:.1f}" for n in RECALLS)


def steps(args: argparse.Namespace, work: Path) -> dict[str, list[list[str]]]:
    """Each step's command lines (several: run at once)."""
    python = sys.executable
    city, run, store = work / "city", work / "run", work / "store"
    common = ["--no-progress", "--threads", str(args.threads)]
    describe = ["--engine", args.engine, "--workers", "0", *common]
    model_args = ["--clusters", str(args.clusters), "--resize", "fixed", "--size", "120", "160"]
    return {
        "generate": [[python, "-m", "netvlad.cli.main", "generate", "--out", str(city), "--size", args.size,
                      "--workers", "2", "--seed", str(args.seed), "--no-progress"]],
        "train": [[python, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--log-dir",
                   str(work / "torchrun"), "-m", "netvlad.cli.main", "train",
                   str(city), "--split", "train", "--epochs", "1", "--epoch-queries", str(args.epoch_queries),
                   *model_args, "--lr", str(args.lr), "--whitening-dim", str(args.whitening_dim), "--out", str(run),
                   *common]],
        "extract": [[python, "-m", "netvlad.cli.main", "extract", str(city), "--split", "test", "--model",
                     str(run / "init.safetensors"), "--store", str(store), "--shard", f"{i}/2", *describe]
                    for i in range(2)],
        "evaluate-init": [[python, "-m", "netvlad.cli.main", "evaluate", str(city), "--split", "test", "--model",
                           str(run / "init.safetensors"), "--store", str(store), "--output",
                           str(work / "init" / "recall.json"), "--no-pictures", *describe]],
        "evaluate-trained": [[python, "-m", "netvlad.cli.main", "evaluate", str(city), "--split", "test", "--model",
                              str(run / "model.safetensors"), "--store", str(work / "store-trained"), "--output",
                              str(work / "trained" / "recall.json"), "--no-pictures", *describe]],
    }


def city_summary(work: Path) -> str:
    """The city's image counts and the test split's queries and database (from the evaluate report)."""
    report = json.loads((work / "trained" / "recall.json").read_text(encoding="utf-8"))
    images = sum(1 for p in (work / "city" / "images").rglob("*") if p.is_file())
    conditions = ", ".join(sorted(report.get("recall_by_condition", {})))
    return (f"A {images:,}-image generated city, MobileNetV2 + NetVLAD K={{K}} at 120×160, 1 epoch of {{Q:,}} "
            f"queries, lr {{LR:g}}, whitening to {{W}}, exact search; test split {report['num_queries']:,} queries "
            f"({conditions}) against {report['num_database']:,} database images.")


def run_steps(args: argparse.Namespace, work: Path) -> dict[str, list[Usage]]:
    """Run every step in ``work`` -> each step's usages (resumes a ``--keep`` folder: a step whose
    ``usage-<step>.json`` exists is not run again)."""
    env, log = _environment(args.threads), work / "commands.log"
    usages = {}
    for name, commands in steps(args, work).items():
        done = work / f"usage-{name}.json"
        if done.exists():
            usages[name] = [Usage(**u) for u in json.loads(done.read_text(encoding="utf-8"))]
            continue
        print(f"{time.strftime('%H:%M:%S')} {name}", file=sys.stderr, flush=True)
        usages[name] = measure(commands, env, log)
        done.write_text(json.dumps([u.__dict__ for u in usages[name]]), encoding="utf-8")
    return usages


def table(args: argparse.Namespace, work: Path, usages: dict[str, list[Usage]]) -> str:
    shards = usages["extract"]
    rows = [
        ("generate", usages["generate"][0], ""),
        ("train, 2 ranks", usages["train"][0], ""),
        ("extract with the k-means model, 2 shards at once",
         Usage(max(u.wall for u in shards), 0.0, 0), ""),
        ("evaluate the k-means model from the store", usages["evaluate-init"][0],
         recall(work / "init" / "recall.json")),
        (f"evaluate the trained model (whitened {args.whitening_dim}-D), extraction included",
         usages["evaluate-trained"][0], recall(work / "trained" / "recall.json")),
    ]
    lines = ["| step | wall | CPU | peak memory (largest process) | Recall@1/5/10/20 |", "|---|---:|---:|---:|---|"]
    for label, usage, recalls in rows:
        if usage is rows[2][1]:
            cpu = " + ".join(f"{u.cpu:.0f} s" for u in shards)
            peak = " / ".join(gigabytes(u.peak) for u in shards)
        else:
            cpu, peak = f"{usage.cpu:.0f} s", gigabytes(usage.peak)
        lines.append(f"| {label} | {duration(usage.wall)} | {cpu} | {peak} | {recalls} |")
    summary = city_summary(work).format(K=args.clusters, Q=args.epoch_queries, LR=args.lr, W=args.whitening_dim)
    return summary + "\n\n" + "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    """Run the steps in ``--keep`` or a temporary folder (deleted after) -> the Markdown table."""
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return table(args, args.keep, run_steps(args, args.keep))
    work = Path(tempfile.mkdtemp(prefix="netvlad-city-large-"))
    try:
        return table(args, work, run_steps(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
