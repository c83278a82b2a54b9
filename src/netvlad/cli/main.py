"""The ``netvlad`` command: argument parsing, logging set-up and device choice live here only."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from netvlad import __version__

logger = logging.getLogger("netvlad")

# Each module adds its sub-commands through ``register(subparsers)``; each command is ``func(args) -> int``.
COMMAND_MODULES = ("demo", "data", "generate", "cluster", "train", "evaluate", "extract", "index", "export", "convert")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netvlad", description="NetVLAD visual place recognition.")
    parser.add_argument("--version", action="version", version=f"netvlad {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"netvlad.cli.{name}").register(subparsers)
    return parser


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as error:
        if args.verbose > 1:
            raise
        logger.error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
