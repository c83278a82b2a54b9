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
