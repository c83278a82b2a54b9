"""Numbers that reproduce on any x86-64 CPU: one code path for every kernel library, and a record of what ran.

Torch, faiss and numpy pick their kernels by the instruction set of the CPU they run on (ATen's vectorised ops,
oneDNN's convolutions, MKL's GEMMs, faiss's distance code, OpenBLAS), and different kernels sum in different orders:
the same seed and threads then give other weights, and a few points of Recall@N, on another machine.
:func:`pin_kernels` sets each library's own switch to a path every x86-64 CPU runs the same way. The libraries
read these variables once, when they load: call it before ``torch``, ``faiss`` or ``numpy`` is imported (the
``netvlad`` command does, for ``--deterministic``). This module imports none of them.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

# Each library's switch, and the value every x86-64 CPU (SSE4.1, i.e. any since 2008) runs identically.
PINNED: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "default",  # torch's ATen vectorised ops: the plain (non-AVX) build of each kernel
    "ONEDNN_MAX_CPU_ISA": "SSE41",  # oneDNN (torch's convolutions): its SSE4.1 JIT kernels
    "DNNL_MAX_CPU_ISA": "SSE41",  # the same switch under oneDNN's older name
    "MKL_CBWR": "COMPATIBLE",  # MKL (torch's GEMMs): conditional numerical reproducibility, one path on any CPU
    "FAISS_SIMD_LEVEL": "NONE",  # faiss (k-means, search) with dynamic dispatch: its scalar code
    "FAISS_OPT_LEVEL": "generic",  # the same for faiss builds that load one library per instruction set
    "OPENBLAS_CORETYPE": "Prescott",  # OpenBLAS (numpy's and faiss's BLAS): its SSE3 kernels
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",  # numpy 2's ufuncs: its x86-64-v2 baseline
}
LIBRARIES = ("torch", "numpy", "faiss")


def pin_kernels(force: bool = False) -> dict[str, str]:
    """Set :data:`PINNED` in the environment (overriding other values, with a log line) -> the variables set.

    Must run before torch, faiss and numpy load. Once torch is loaded its kernels are chosen: then nothing is set
    (unless ``force``) and a warning says so, so that a report never claims kernels that are not in use.
    """
    loaded = [name for name in LIBRARIES if name in sys.modules]
    if loaded:
        logger.warning("deterministic kernels: %s already loaded with its own kernels; the numbers may differ "
                       "across CPUs (set the variables before the import, or run through the netvlad command)",
                       ", ".join(loaded))
    if "torch" in loaded and not force:
        return {}
    for name, value in PINNED.items():
        if os.environ.get(name, value) != value:
            logger.info("deterministic kernels: %s=%s replaces %s", name, value, os.environ[name])
        os.environ[name] = value
    return dict(PINNED)


def deterministic() -> bool:
    """True when every switch of :data:`PINNED` is in effect (and a loaded torch runs its default kernels)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        return False
    return all(os.environ.get(name) == value for name, value in PINNED.items())


def cpu_isa() -> str:
    """The best vector instruction set this CPU offers (``avx512``, ``avx2``, ``avx``, ``sse4_2``, …, or machine)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return platform.machine()
    for isa, flag in (("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx"), ("sse4_2", "sse4_2")):
        if flag in flags:
            return isa
    return platform.machine()


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numeric_environment() -> dict:
    """What decides the numbers of this run: library versions, CPU and its instruction set, the kernels in use."""
    from importlib import metadata

    versions = {}
    for name in ("netvlad", "torch", "numpy", "faiss-cpu", "faiss-gpu", "faiss"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    kernels = {name: os.environ.get(name) for name in PINNED}
    torch = sys.modules.get("torch")
    return {"deterministic": deterministic(), "cpu": cpu_name(), "cpu_isa": cpu_isa(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability() if torch else None,
            "torch_threads": torch.get_num_threads() if torch else None, "python": platform.python_version(),
            "versions": versions, "kernel_switches": kernels}


def describe(environment: dict) -> str:
    """One line for a report: the deterministic setting, the kernels and the CPU."""
    versions = ", ".join(f"{name} {version}" for name, version in environment["versions"].items())
    setting = ("deterministic kernels (the same on any x86-64 CPU)" if environment["deterministic"]
               else "the CPU's fastest kernels (numbers may differ on another CPU)")
    return (f"{setting}; torch CPU capability {environment['torch_cpu_capability']}, CPU {environment['cpu']} "
            f"({environment['cpu_isa']}), {environment['torch_threads']} torch threads; {versions}")


def record_numerics(folder: Path | str) -> dict:
    """Write ``folder/numerics.json`` (library versions, CPU, instruction set, kernels) and log its line."""
    from netvlad.files import atomic_write

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
