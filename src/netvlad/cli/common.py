"""Shared CLI pieces: checked argument types, threads, device choice, and the model the arguments describe.

The model comes from ``--model CKPT`` or ``--backbone/--pool``. Nothing heavy is imported at module level: parsing
arguments (and failing on them) never imports torch; the functions that need it import it when they run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from netvlad.limits import COUNT, NON_NEGATIVE_INT, NUM_CLUSTERS, Limit
from netvlad.models.backbone_specs import BACKBONES
from netvlad.models.pools import POOLS

logger = logging.getLogger(__name__)


class Number:
    """An argparse ``type`` that accepts numbers in its ``limit`` and names the allowed range otherwise."""

    def __init__(self, limit: Limit) -> None:
        self.limit, self.__name__ = limit, limit.describe()  # argparse names the type by __name__

    def __call__(self, text: str) -> int | float:
        try:
            return self.limit.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None


def number(limit: Limit) -> Number:
    """An argparse ``type`` that accepts numbers in ``limit`` and names the allowed range otherwise."""
    return Number(limit)


def existing(kind: str = "path", what: str | None = None) -> Callable[[str], Path]:
    """An argparse ``type`` for an input that must exist: ``"path"``, ``"file"`` or ``"folder"``.

    A missing input raises FileNotFoundError (IsADirectoryError, NotADirectoryError), which argparse lets
    through: ``netvlad.cli.main`` reports it as one ERROR line naming the path (exit 1), as it reports a file
    that exists but cannot be read.
    """
    what = what or {"path": "file or folder", "file": "file", "folder": "folder"}[kind]

    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{text}: {what} not found; check the path")
        if kind == "file" and path.is_dir():
            raise IsADirectoryError(f"{text}: is a folder; give the {what} itself")
        if kind == "folder" and not path.is_dir():
            raise NotADirectoryError(f"{text}: is a file; give the {what}")
        return path

    parse.__name__ = what
    return parse


def output(kind: str = "file") -> Callable[[str], Path]:
    """An argparse ``type`` for a ``"file"`` or ``"folder"`` to write: refused at once (as ``existing`` refuses a
    missing input) when a folder stands where a file goes, or the other way round, or nothing can be written there.
    """
    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if kind == "file" and path.is_dir():
            raise IsADirectoryError(f"{text}: is a folder; give the name of a file to write")
        if kind == "folder" and path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{text}: is a file; give a folder to write into")
        parent = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
        if parent != path.absolute() and (not parent.is_dir() or not os.access(parent, os.W_OK)):
            raise PermissionError(f"{text}: cannot be written ({parent} is not a writable folder)")
        return path

    parse.__name__ = f"output {kind}"
    return parse


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads(workers: int = 0) -> int:
    """Compute threads that do not oversubscribe the machine: this process's share of the usable cores (torchrun
    starts ``LOCAL_WORLD_SIZE`` processes per machine) less one for the main thread's other work and one per
    DataLoader worker, at least 1."""
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, usable_cores() // processes - 1 - workers)


THREADS_RULE = "usable cores (÷ torchrun processes) − 1 − --workers, at least 1"


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: compute threads for torch, faiss and BLAS (every command has it)."""
    parser.add_argument("--threads", type=number(COUNT), default=None,
                        help=f"compute threads for torch, faiss and BLAS (default: {THREADS_RULE}; "
                             f"{default_threads()} here without workers). More threads than free cores stall "
                             "each other, ~10× slower")


def set_threads(threads: int | None, workers: int = 0) -> int:
    """Use ``threads`` (default: :func:`default_threads`) in torch, faiss and BLAS, now or when they are imported."""
    cores = usable_cores()
    if threads is None:
        threads = default_threads(workers)
    elif threads > cores:
        logger.warning("--threads %d is more than the %d usable cores; threads will wait for each other",
                       threads, cores)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)  # read by torch, faiss and numpy when they are first imported
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(threads)
    return threads


def pick_device(name: str = "auto"):
    """A ``torch.device``: ``auto`` picks CUDA, then Apple MPS, then CPU."""
    import torch

    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--workers``, ``--batch-size``, ``--no-progress``."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default)")
    parser.add_argument("--workers", type=number(NON_NEGATIVE_INT), default=2,
                        help="image-decoding worker processes (0: decode in the main process)")
    parser.add_argument("--batch-size", type=number(COUNT), default=8,
                        help="images loaded (and, on a GPU, run through the model) together; on a CPU each image "
                             "runs alone, so its descriptor's bytes never depend on its batch")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide progress bars (shown only when standard error is a terminal)")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """A checkpoint (``--model``) or an off-the-shelf backbone + pooling, and input-size overrides."""
    group = parser.add_argument_group("model (a checkpoint, or an off-the-shelf backbone + pooling)")
    group.add_argument("--model", type=existing("file", "checkpoint"), help="a netvlad checkpoint (.safetensors)")
    group.add_argument("--backbone", default="mobilenet_v2", choices=BACKBONES.names(),
                       help=BACKBONES.describe())
    group.add_argument("--pool", default="netvlad", choices=POOLS.names(), help=POOLS.describe())
    group.add_argument("--clusters", type=number(NUM_CLUSTERS), default=64, help="NetVLAD K")
    group.add_argument("--parametrization", default="official", choices=("official", "paper"),
                       help="NetVLAD assignment: the official code's or the paper's (with a bias)")
    group.add_argument("--no-pretrained", action="store_true", help="random backbone weights")
    group.add_argument("--resize", choices=("none", "fixed", "longest"), default=None,
                       help="override the model's input-size policy (default: the checkpoint's; off the shelf: "
                            "longest)")
    group.add_argument("--size", type=number(COUNT), nargs="+", default=None,
                       help="pixels: H W for fixed, S for longest (default: the checkpoint's; off the shelf: 640)")
    group.add_argument("--fast-decode", action="store_true",
                       help="decode JPEGs at reduced scale (1/2, 1/4 or 1/8) before the resize: faster, descriptors "
                            "slightly different from a full decode's (default: the checkpoint's; off the shelf: a "
                            "full decode, as the reference pipelines)")


def model_from_args(args: argparse.Namespace):
    """Load ``--model`` or build ``--backbone``/``--pool``; ``--resize/--size/--fast-decode`` override
    preprocessing."""
    import dataclasses

    from netvlad.cli.ignored_args import refuse_architecture_with_checkpoint
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing, load

    refuse_architecture_with_checkpoint(args)
    if args.model:
        model = load(args.model)
    else:
        config = ModelConfig(backbone=args.backbone, pool=args.pool, num_clusters=args.clusters,
                             parametrization=args.parametrization)
        model = PlaceModel(config, pretrained=not args.no_pretrained)
    if args.resize or args.size or getattr(args, "fast_decode", False):
        pre = model.config.preprocessing
        pre = Preprocessing(resize=args.resize or pre.resize, size=tuple(args.size or pre.size), mean=pre.mean,
                            std=pre.std, value_scale=pre.value_scale,
                            fast_decode=pre.fast_decode or getattr(args, "fast_decode", False))
        model.config = dataclasses.replace(model.config, preprocessing=pre)
    return model.eval()
