"""`netvlad demo`: the whole system on the generated city (or a given dataset), in minutes on a CPU."""

from __future__ import annotations

import argparse

from netvlad.cli.options import add_engine_arg, add_numerics_args, existing, number, output
from netvlad.limits import NON_NEGATIVE_INT
from netvlad.pipeline.demo_config import PRESETS


def run(args: argparse.Namespace) -> int:
    """Run the demo pipeline and print its table and seed (threads are set by ``netvlad.cli.main``)."""
    from netvlad.cli.options import check_pair, pick_device
    from netvlad.numerics import deterministic
    from netvlad.pipeline import DemoConfig, run_demo

    check_pair(args)
    overrides = {"seed": args.seed} if args.seed is not None else {}
    if args.pictures is not None:
        overrides["retrieval_queries"] = args.pictures
    config = DemoConfig.preset(args.preset, data=args.data, database=args.database, queries=args.queries,
                               frame_tolerance=args.frame_tolerance, engine=args.engine, **overrides)
    result = run_demo(config, args.out, device=pick_device(args.device), progress=not args.no_progress,
                      force=args.force)
    print(result.table)
    print(f"seed {result.seed}, {result.threads} torch thread{'s' if result.threads != 1 else ''}, evaluated by "
          f"{args.engine}, "
          + ("deterministic kernels (the same seed, thread count and engine give the same numbers on any x86-64 CPU)"
             if deterministic() else "the CPU's fastest kernels (another CPU may give other numbers)"))
    print(f"report: {result.report / 'index.md'}")
    return 0


def register(subparsers) -> None:
    """Add ``netvlad demo``."""
    parser = subparsers.add_parser(
        "demo", help="generate a city, train NetVLAD, compare with off-the-shelf descriptors, write a report",
        description="Generate the synthetic geo-tagged city (or use --data), initialise NetVLAD's clusters by "
                    "k-means, train it briefly with the paper's ranking loss and hard negatives, evaluate it "
                    "against f_max, GeM and k-means NetVLAD on the test split, localise a few queries, and write "
                    "OUT/report/index.md.")
    parser.add_argument("--data", metavar="DATASET", type=existing(what="dataset"),
                        help="a dataset instead of the city: its train/val/test "
                        "splits, or (without splits) its first places for training and the last for testing")
    parser.add_argument("--database", help="--data sequences: database sub-folder (e.g. summer)")
    parser.add_argument("--queries", help="--data sequences: query sub-folder (e.g. winter)")
    parser.add_argument("--frame-tolerance", type=number(NON_NEGATIVE_INT), metavar="K",
                        help="--data sequences: ±K frames are correct")
    parser.add_argument("--out", default="netvlad-demo", type=output("folder"), help="output folder: city/, "
                        "clusters/, run/, evaluation/, report/, steps/ (default: netvlad-demo)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), help="tiny: a seconds-long check")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default)")
    parser.add_argument("--seed", type=number(NON_NEGATIVE_INT), default=None,
                        help="training seed: k-means sampling, query order, mining (default: the preset's, 0)")
    parser.add_argument("--force", action="store_true",
                        help="redo every step (default: a rerun skips steps whose outputs exist for the same inputs "
                             "and continues an interrupted training)")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide progress bars (shown only when standard error is a terminal)")
    parser.add_argument("--pictures", type=number(NON_NEGATIVE_INT), default=None, metavar="N",
                        help="test queries drawn in each retrieval picture (default: the preset's, 6; 0: none)")
    add_numerics_args(parser, default=True)
    # torch by default: --deterministic pins torch's kernels; onnxruntime's own (MLAS) are chosen by the CPU
    add_engine_arg(parser, default="torch")
    parser.set_defaults(func=run)
