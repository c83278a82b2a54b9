"""What every benchmark shares: the repository and shared-data paths, the work folder, thread pinning, the machine
line and the Markdown fragment a benchmark writes for the docs."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NETVLAD_SHARED_DATA", REPO.parent / "shared" / "data"))  # as the tests
ENV = "NETVLAD_BENCH_DIR"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def work_dir(*parts: str) -> Path:
    """``$NETVLAD_BENCH_DIR/parts…``, or ``<system temp>/netvlad-bench/parts…`` (never a fixed absolute path)."""
    base = os.environ.get(ENV) or str(Path(tempfile.gettempdir()) / "netvlad-bench")
    return Path(base).expanduser().joinpath(*parts)


def pin_threads(argv: list[str], default: int = 1) -> int:
    """Set :data:`THREAD_VARIABLES` to ``argv``'s first ``--threads`` value (``default`` without one) -> that count.

    numpy's OpenBLAS (and MKL, OpenMP) fix their thread count when first loaded; left at every core, the small
    products of the sequence step ran ~25× slower on a busy machine than at one thread, so this runs before numpy
    is imported."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=default)
    threads = pre.parse_known_args(argv)[0].threads
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    return threads


def machine(command: str = "", seed: int = 0) -> dict:
    """The command, UTC date, CPU and instruction set, torch threads, torch and onnxruntime versions and seed (the
    same record ``netvlad benchmark`` writes)."""
    import torch

    from netvlad.pipeline.benchmark.report import run_meta

    return run_meta(command, torch.get_num_threads(), seed)


def add_results_option(parser: argparse.ArgumentParser) -> None:
    """``--results DIR``: where the benchmark writes its docs table as ``DIR/<name>.md``."""
    parser.add_argument("--results", type=Path, default=None, metavar="DIR",
                        help="also write the table as DIR/<benchmark>.md, its first line the command and machine "
                             "(the docs include docs/results/<benchmark>.md)")


def write_fragment(folder: Path, name: str, markdown: str, command: str, seed: int = 0) -> Path:
    """``folder/name.md``: the command and machine line, a blank line, then ``markdown``; returns its path."""
    from netvlad.files import atomic_write
    from netvlad.pipeline.benchmark.report import header

    text = f"{header(machine(command, seed))}\n\n{markdown.strip()}\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    atomic_write(path, lambda tmp: tmp.write_text(text, "utf-8"))
    return path
