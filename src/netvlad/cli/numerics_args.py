"""``--deterministic``: one kernel code path on every x86-64 CPU (see :mod:`netvlad.numerics`)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_numerics_args(parser: argparse.ArgumentParser, default: bool) -> None:
    """Add ``--deterministic/--no-deterministic`` (``default``: on or off for this command)."""
    parser.add_argument(
        "--deterministic", action=argparse.BooleanOptionalAction, default=default,
        help="pin torch (ATen, oneDNN, MKL), faiss and OpenBLAS to one code path, so that the same seed and "
             "--threads give bit-identical weights and Recall@N on any x86-64 CPU (slower: see "
             f"docs/reproducibility.md); default: {'on' if default else 'off'}")


def apply_numerics(args: argparse.Namespace) -> None:
    """Pin the kernels when the command asks for it; runs before the command imports torch (``cli.main``)."""
    if getattr(args, "deterministic", False):
        from netvlad.numerics import pin_kernels

        pin_kernels()


def record_numerics(folder: Path | str) -> dict:
    """Write ``folder/numerics.json`` (library versions, CPU, instruction set, kernels) and log its line."""
    from netvlad.files import atomic_write
    from netvlad.numerics import describe, numeric_environment

    environment = numeric_environment()
    path = Path(folder) / "numerics.json"
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(environment, indent=1), encoding="utf-8"))
    logger.info("numerics: %s", describe(environment))
    return environment


def _kernels(deterministic: bool) -> str:
    """How a run's kernel setting reads in a message."""
    return "deterministic kernels" if deterministic else "the CPU's fastest kernels"


def check_resumed_numerics(run_dir: Path | str) -> None:
    """``--resume``: refuse kernels (and, for a deterministic run, torch threads) other than the run started with.

    Either changes the arithmetic, so the resumed run would no longer continue bit for bit; a run that never
    promised bit-identity (fastest kernels) may change its thread count, with a warning.
    """
    from netvlad.errors import BadInputError
    from netvlad.numerics import numeric_environment

    path = Path(run_dir) / "numerics.json"
    if not path.is_file():  # a run from before numerics.json: nothing to compare
        logger.info("%s: no record of the run's kernels; resuming with the current ones", path)
        return
    started, now = json.loads(path.read_text(encoding="utf-8")), numeric_environment()
    if started.get("deterministic") != now["deterministic"]:
        raise BadInputError(
            f"{run_dir} was started with {_kernels(started.get('deterministic'))}, this resume would run "
            f"{_kernels(now['deterministic'])}: the weights would no longer continue bit for bit", path=path,
            hint=f"resume with --{'' if started.get('deterministic') else 'no-'}deterministic")
    threads = started.get("torch_threads")
    if threads is not None and threads != now["torch_threads"]:
        change = f"{run_dir} was started with {threads} torch threads, this resume runs {now['torch_threads']}"
        if started.get("deterministic"):
            raise BadInputError(f"{change}: a deterministic run would no longer continue bit for bit", path=path,
                                hint=f"resume with --threads {threads}")
        logger.warning("%s: the last bits of the weights may differ from an uninterrupted run", change)
