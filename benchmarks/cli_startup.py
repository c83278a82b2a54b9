"""CLI start-up: ``netvlad --help``, ``--version`` and argument/path errors against ``python -c "import torch"``.

Each command runs in a fresh interpreter, interleaved with the torch import so that both see the same machine
load; the figure is the ratio of medians (target: every case < 0.2× the torch import). Each case also reports
whether torch, faiss or matplotlib got imported (they must not be).

    python -m benchmarks cli-startup [--repeats 5] [--src OTHER_CHECKOUT/src]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, add_results_option

SRC = REPO / "src"
CASES = {
    "--help": ["--help"],
    "--version": ["--version"],
    "evaluate --help": ["evaluate", "--help"],
    "argument error (--size -5)": ["evaluate", ".", "--size", "-5"],
    "path error (missing dataset)": ["evaluate", "/no/such/dataset"],
    "train argument error (--lr abc)": ["train", ".", "--lr", "abc"],
}
# Runs the CLI as `netvlad` would, then reports which heavy libraries it imported.
PROBE = (
    "import sys\nfrom netvlad.cli.main import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    "sys.stderr.write('HEAVY:' + ','.join(m for m in ('torch', 'faiss', 'matplotlib') if m in sys.modules))\n"
)


def timed(argv: list[str], src: Path = SRC) -> tuple[float, str]:
    """Wall seconds of one fresh interpreter running ``argv`` with ``src`` first on the path, and its stderr."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, check=False)
    return time.perf_counter() - start, done.stderr


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--repeats", type=int, default=5, help="runs of each case (medians are compared)")
    parser.add_argument("--src", type=Path, default=SRC, help="the netvlad sources to time (default: this checkout)")
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options."""
    repeats = args.repeats
    torch_times: list[float] = []
    case_times: dict[str, list[float]] = {name: [] for name in CASES}
    heavy: dict[str, str] = {}
    for _ in range(repeats):
        for name, argv in CASES.items():
            torch_times.append(timed(["-c", "import torch"])[0])
            seconds, stderr = timed(["-c", PROBE, *argv], args.src)
            case_times[name].append(seconds)
            heavy[name] = stderr.rsplit("HEAVY:", 1)[-1].strip() or "none"
    base = statistics.median(torch_times)
    lines = ["| case | seconds (median) | × `import torch` | heavy imports |", "|---|---:|---:|---|",
             f'| `python -c "import torch"` | {base:.3f} | 1 | torch |']
    for name, times in case_times.items():
        seconds = statistics.median(times)
        lines.append(f"| `netvlad {name}` | {seconds:.3f} | {seconds / base:.3f} | {heavy[name]} |")
    worst = max(statistics.median(t) for t in case_times.values()) / base
    return "\n".join([*lines, "", f"Worst ratio: {worst:.3f}× the torch import (target < 0.2×)."])
