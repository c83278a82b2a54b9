"""The ``netvlad`` command: argument parsing, logging set-up, threads and device choice live here only.

Each sub-command is one module of this package with ``register(subparsers)``; those modules import nothing heavy
at module level, so ``netvlad --help``, ``--version`` and argument errors answer without loading torch, faiss or
matplotlib. A command's function (``func(args) -> int``) imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import re
import shlex
import sys

from netvlad import __version__
from netvlad.cli.options import add_threads_arg, refuse_unused, set_threads
from netvlad.cli.parser import Parser
from netvlad.errors import BadInputError

logger = logging.getLogger("netvlad")

# Each module adds its sub-commands through ``register(subparsers)``; each command is ``func(args) -> int``.
COMMAND_MODULES = ("demo", "data", "generate", "cluster", "train", "evaluate", "retrieve", "extract", "index", "query",
                   "export", "convert", "store", "stream", "seqnet", "benchmark")


def build_parser() -> argparse.ArgumentParser:
    """The whole ``netvlad`` parser; every leaf command gets ``--threads``."""
    parser = Parser(prog="netvlad", description="NetVLAD visual place recognition.")
    parser.add_argument("--version", action="version", version=f"netvlad {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: debug messages from netvlad; -vv: also from other libraries, and tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"netvlad.cli.{name}").register(subparsers)
    for leaf in leaf_parsers(parser):
        if "--threads" not in leaf._option_string_actions:
            add_threads_arg(leaf)
    return parser


def leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that run a command (those without sub-commands of their own), each once."""
    children = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not children:
        return [parser]
    unique = {id(p): p for action in children for p in action.choices.values()}
    return [leaf for child in unique.values() for leaf in leaf_parsers(child)]


def setup_logging(verbose: int, quiet: bool) -> None:
    """netvlad's messages at INFO (``-q``: WARNING, ``-v``: DEBUG); other libraries' at WARNING (``-vv``: DEBUG)."""
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
OTHER_PROGRAMS = ("--nproc_per_node",)  # torchrun's, named in hints that show how to run under it


def applicable_hint(hint: str | None, leaf: argparse.ArgumentParser | None) -> str | None:
    """``hint`` where every flag it names (outside a quoted `other command`) is one the command ``leaf`` accepts,
    else None: a fix that the command cannot take is no fix."""
    if not hint or leaf is None:
        return hint
    own = re.sub(r"`[^`]*`", "", hint)
    unknown = [f for f in FLAG.findall(own) if f not in leaf._option_string_actions and f not in OTHER_PROGRAMS]
    if unknown:
        logger.debug("hint %r left out: %s takes no %s", hint, leaf.prog, ", ".join(unknown))
        return None
    return hint


def report(error: BaseException, leaf: argparse.ArgumentParser | None = None) -> None:
    """One ERROR line: the library's message, then the command-line wording of the fix where it has one that the
    command ``leaf`` accepts."""
    hint = getattr(error, "hint", None) if isinstance(error, BadInputError) else None
    hint = applicable_hint(hint, leaf)
    message = " ".join(str(error).split())  # one line, whatever the message held
    logger.error("%s%s", message, f" (on the command line: {hint})" if hint else "")


def main(argv: list[str] | None = None) -> int:
    """Run ``netvlad ARGV``: 0 on success, 1 on bad input (one ERROR line), 2 on a usage error."""
    parser = build_parser()
    level = logger.level  # restored on return: tests call main() many times in one process
    try:
        try:
            args = parser.parse_args(argv)
        except OSError as error:  # an input or output path refused while parsing (options.existing, options.output)
            setup_logging(0, False)
            report(error)
            return 1
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        args.typed = "netvlad " + shlex.join(sys.argv[1:] if argv is None else argv)  # for a report's first line
        setup_logging(args.verbose, args.quiet)
        return run(args, next(leaf for leaf in leaf_parsers(parser) if leaf.get_default("func") is args.func))
    finally:
        logger.setLevel(level)


def entry() -> int:
    """The ``netvlad`` command's entry point: :func:`main` on the process's arguments -> its exit code, with what
    the process holds frozen for its last garbage collection (:func:`gc.freeze`) just before it exits: the
    interpreter then leaves the hundreds of thousands of objects torch's imports made to the operating system
    instead of collecting them one by one (about 1.5 s of every command's exit). Exit handlers still run (logs are
    flushed, temporary folders removed); every file the commands write is closed before they return."""
    code = main()
    gc.freeze()
    return code


def apply_numerics(args: argparse.Namespace) -> None:
    """Pin the kernels when the command asks for it (``--deterministic``), before the command imports torch."""
    if getattr(args, "deterministic", False):
        from netvlad.numerics import pin_kernels

        pin_kernels()


def stderr_is_terminal() -> bool:
    """True when standard error is a terminal: progress bars are drawn there only."""
    return sys.stderr.isatty()


def run(args: argparse.Namespace, leaf: argparse.ArgumentParser | None = None) -> int:
    """Set the threads and run the chosen command (parsed by ``leaf``); bad input becomes one ERROR line, exit 1."""
    try:
        if leaf is not None:
            refuse_unused(args, leaf)  # options that would be ignored without the one they need
        apply_numerics(args)  # --deterministic: before anything imports torch
        if getattr(args, "no_progress", True) is False and not stderr_is_terminal():
            args.no_progress = True  # progress bars on a terminal only: a redirected log holds messages, not bars
        set_threads(args.threads, getattr(args, "workers", 0) or 0)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    except (BadInputError, ValueError, FileNotFoundError, RuntimeError, OSError) as error:
        if args.verbose > 1:
            raise
        report(error, leaf)
        return 1


if __name__ == "__main__":
    sys.exit(entry())
