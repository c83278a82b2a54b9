"""Thread counts for benchmarks, set before numpy is imported.

numpy's OpenBLAS (and MKL, OpenMP) fix their thread count when first loaded; left at their default, every core,
the small products of the sequence step ran ~25× slower on a busy machine than at one thread. A benchmark calls
:func:`pin_from_argv` before ``import numpy`` so that ``--threads N`` holds for BLAS too, not only for torch and
faiss.
"""

from __future__ import annotations

import argparse
import os

VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_from_argv(default: int = 1) -> int:
    """Set :data:`VARIABLES` to the command line's ``--threads`` (``default`` without one); -> that count."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=default)
    threads = pre.parse_known_args()[0].threads
    for name in VARIABLES:
        os.environ[name] = str(threads)
    return threads
