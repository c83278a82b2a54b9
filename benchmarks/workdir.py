"""Where the benchmarks keep their generated data: ``$NETVLAD_BENCH_DIR``, else a folder in the system's temp dir."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ENV = "NETVLAD_BENCH_DIR"


def work_dir(*parts: str) -> Path:
    """``$NETVLAD_BENCH_DIR/parts…``, or ``<system temp>/netvlad-bench/parts…`` (never a fixed absolute path)."""
    base = os.environ.get(ENV) or str(Path(tempfile.gettempdir()) / "netvlad-bench")
    return Path(base).expanduser().joinpath(*parts)
