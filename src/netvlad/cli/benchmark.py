"""``netvlad benchmark``: methods (rows) × datasets (columns) from a suite file, with the leave-one-set-out choice of
the default; the library side is :mod:`netvlad.pipeline.benchmark`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from netvlad.cli.options import output

logger = logging.getLogger(__name__)
DEFAULT_DATA = Path("..") / "shared" / "data"


def command_line(args: argparse.Namespace) -> str:
    """The command as a user would retype it (the options given, the output folder and data root)."""
    words = ["netvlad", "benchmark", "--suite", str(args.suite), "--out", str(args.out)]
    if args.data != DEFAULT_DATA:
        words += ["--data", str(args.data)]
    if args.cache is not None:
        words += ["--cache", str(args.cache)]
    if args.results is not None:
        words += ["--results", str(args.results)]
    return " ".join(words + (["--threads", str(args.threads)] if args.threads else []))


def run_benchmark_command(args: argparse.Namespace) -> int:
    """Load the suite, run every cell (continuing from OUT and the cache), print the table, write the reports."""
    from netvlad.errors import BadInputError
    from netvlad.pipeline.benchmark.report import table, write_fragments, write_reports
    from netvlad.pipeline.benchmark.run import run_suite
    from netvlad.pipeline.benchmark.suite import load_suite

    suite = load_suite(args.suite)
    if args.results is not None and not suite.fragments:
        raise BadInputError(f"--results: suite {suite.name} names no docs fragments (fragments: {{NAME: PART}} in "
                            "its file); drop --results, or use a suite that names them")
    result = run_suite(suite, args.out, args.data, args.cache, command=command_line(args))
    print(table(result))
    paths = list(write_reports(result, args.out).values())
    if args.results is not None:
        paths += write_fragments(result, args.results)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def register(subparsers) -> None:
    """Add ``netvlad benchmark``."""
    from netvlad.pipeline.benchmark.suite import shipped_suites

    shipped = ", ".join(shipped_suites())
    parser = subparsers.add_parser(
        "benchmark", help="methods × datasets from a suite file: Recall@N, time per query, the default's choice",
        description=f"Run a benchmark suite (a YAML file, or a shipped one by name: {shipped}): every method "
                    "row on every dataset over descriptors extracted once per (model, dataset) into stores under "
                    "--cache, then print the Recall@1 table and write OUT/benchmark.json, benchmark.md (a docs "
                    "fragment with the command and machine) and benchmark.png. A rerun continues from OUT and the "
                    "stores; a failing cell holds its error.")
    parser.add_argument("--suite", default="default", metavar="NAME|FILE.yaml",
                        help=f"a shipped suite ({shipped}) or a suite file (default: default)")
    parser.add_argument("--out", type=output("folder"), required=True, metavar="DIR",
                        help="where the cells and reports go")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                        help="the folder holding the suite's dataset paths (default ../shared/data)")
    parser.add_argument("--cache", type=Path, default=None, metavar="DIR",
                        help="stores and generated cities, reused by later runs (default $NETVLAD_CACHE/benchmark, "
                             "else netvlad-cache/benchmark in the temp folder)")
    parser.add_argument("--results", type=output("folder"), default=None, metavar="DIR",
                        help="also write the docs fragments the suite names as DIR/NAME.md (e.g. docs/results), "
                             "each starting with the command and machine line")
    parser.set_defaults(func=run_benchmark_command)
