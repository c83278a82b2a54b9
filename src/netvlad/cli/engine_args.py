"""``--engine torch|onnxruntime|auto``: which runtime describes the images (every command that extracts).

The choices come from the torch-free :mod:`netvlad.extract.engine`, so ``netvlad --help`` imports no torch.
"""

from __future__ import annotations

import argparse
import logging
import os

from netvlad.extract.engine import COMMAND_ENGINE, ENGINE_VARIABLE, ENGINES

logger = logging.getLogger(__name__)


def default_engine() -> str:
    """The commands' engine unless ``--engine`` names one: ``$NETVLAD_ENGINE``, else :data:`COMMAND_ENGINE`."""
    return os.environ.get(ENGINE_VARIABLE) or COMMAND_ENGINE


def add_engine_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None = None) -> None:
    """Add ``--engine`` (``default``: the command's own, else :func:`default_engine`)."""
    default = default or default_engine()
    parser.add_argument("--engine", choices=ENGINES.names(), default=default,
                        help=f"inference engine: onnxruntime runs the model's ONNX export (made once, cached in "
                             f"$NETVLAD_CACHE or ~/.cache/netvlad), ~3× faster on a CPU; auto picks it on a CPU "
                             f"when installed, torch otherwise (default {default}; ${ENGINE_VARIABLE} "
                             "sets it)")


def engine_from_args(args: argparse.Namespace, model=None, device="cpu", images: int | None = None):
    """The :class:`netvlad.extract.engine.EngineConfig` of ``--engine`` (onnxruntime threads: the command's); with
    ``model``, the runner resolved for it on ``device`` (exported once, its ``.name`` the engine that runs)."""
    from netvlad.extract.engine import EngineConfig, make_runner

    config = EngineConfig(name=getattr(args, "engine", None) or default_engine())
    if model is None:
        return config
    runner = make_runner(model, config, device, images=images)
    threads = getattr(runner, "threads", 0)
    logger.info("descriptors by %s (%s)", runner.name, f"{threads} thread{'s' * (threads != 1)}" if threads
                else f"device {device}")
    return runner
