"""`netvlad evaluate DATASET`: Recall@N of a checkpoint or an off-the-shelf model, with a JSON/CSV/PNG report."""

from __future__ import annotations

import argparse
import logging

from netvlad.cli.common import add_device_args, add_model_args, number, output
from netvlad.cli.dataset_args import add_dataset_args
from netvlad.cli.engine_args import add_engine_arg
from netvlad.cli.extract_args import add_extract_args, add_pictures_arg, model_label
from netvlad.cli.protocol_args import add_protocol_args, check_protocol_args, group_table
from netvlad.cli.search_args import add_index_args, index_config_from_args, max_memory_from_args, parse_ns
from netvlad.cli.sequence_args import add_sequence_args, sequence_config_from_args
from netvlad.cli.verify_args import add_verify_args, check_verify_model, verify_evaluation, write_verified
from netvlad.constants import EVAL_RADIUS_M
from netvlad.errors import BadInputError
from netvlad.limits import POSITIVE

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    """Evaluate (under ``--protocol`` when given), print the tables, and write the report files."""
    from netvlad.cli.common import model_from_args
    from netvlad.cli.engine_args import engine_from_args
    from netvlad.cli.extract_args import fill_stores, prepare_model, start
    from netvlad.data.conditions import query_conditions
    from netvlad.eval import protocol_eval
    from netvlad.eval.recall import evaluate
    from netvlad.eval.report import condition_recall, condition_table, pr_line

    device, info = start(args, args.store, "netvlad evaluate needs --store DIR")
    sequence, protocol, dataset = open_evaluation(args)
    if info.is_main:
        print(dataset)
    model = model_from_args(args)
    check_verify_model(args, model)
    if protocol:
        protocol_eval.with_input_size(model, protocol)
    model = prepare_model(model, dataset.database.paths(), args, device, info)
    if args.store is not None and not fill_stores(model, [(dataset.database, args.store / "database", "database"),
                                                         (dataset.queries, args.store / "queries", "queries")],
                                                  args, device, info):
        return 0  # another rank: its rows are in the store, rank 0 evaluates
    engine = engine_from_args(args, model, device, len(dataset.database) + len(dataset.queries))  # resolved once:
    # the report names the engine that ran
    common = dict(ns=args.recall, batch_size=args.batch_size, workers=args.workers, device=device,
                  progress=not args.no_progress, store_dir=args.store, skip_bad=args.skip_bad, dtype=args.dtype,
                  index_config=index_config_from_args(args, device),
                  max_memory=max_memory_from_args(args), engine=engine)
    sequence_result = None
    if protocol:
        protocol_run = protocol_eval.evaluate_protocol(model, dataset, protocol, **common)
        result, dataset = protocol_run.result, protocol_run.dataset
    elif sequence is not None:
        protocol_run = None
        result, sequence_result = run_sequences(args, model, dataset, sequence, common)
    else:
        protocol_run = None
        result = evaluate(model, dataset, radius=EVAL_RADIUS_M if args.radius is None else args.radius,
                          **common)
    label = model_label(args, model)
    print(f"{label}: {result.num_queries} queries, {result.num_database} database images, "
          f"{result.descriptor_dim}-D descriptors" + (f", protocol {protocol.name}" if protocol else ""))
    print(result.table() if sequence_result is None else sequence_result.table(result))
    print(pr_line(result))
    verified = verify_evaluation(args, model, dataset, result, device, sequence_result)  # None without --verify
    if protocol_run and protocol_run.per_group:
        print(group_table(protocol_run.per_group, protocol.group_by or "group"))
    conditions = query_conditions(dataset)
    by_condition = condition_recall(result, conditions)
    if by_condition and len(by_condition) > 1:
        print(condition_table(by_condition))
    if args.output:
        write_outputs(args, result, dataset, model, label, engine.name, protocol_run, conditions, sequence_result,
                      verified)
    return 0


def open_evaluation(args: argparse.Namespace):
    """``(sequence config, protocol, dataset)`` of the arguments, refusing the combinations not supported."""
    from netvlad.cli.dataset_args import dataset_from_args, dataset_source
    from netvlad.eval import protocol_eval
    from netvlad.eval.protocols import get_protocol

    sequence = sequence_config_from_args(args)
    protocol = get_protocol(args.protocol) if args.protocol else None
    if sequence is not None and protocol is not None:
        raise BadInputError(f"--sequence with --protocol is not supported: a protocol's evaluation drops unmatched "
                            "queries and scores per group (MSLS cities) without the sequence matcher; drop "
                            f"--protocol {protocol.name} and name the folders and tolerance yourself "
                            "(--database, --queries, --frame-tolerance)")
    if protocol:
        check_protocol_args(args, protocol)
        dataset = protocol_eval.open_for_protocol(dataset_source(args), protocol, image_root=args.image_root,
                                                  skip_bad=args.skip_bad)
    else:
        dataset = dataset_from_args(args)
    return sequence, protocol, dataset


def write_outputs(args: argparse.Namespace, result, dataset, model, label: str, engine: str, protocol_run,
                  conditions, sequence_result, verified) -> None:
    """``--output``: the JSON summary, per-query CSV (with the sequence columns under ``--sequence``) and pictures."""
    from netvlad.eval import protocol_eval
    from netvlad.eval.report import report_paths, write_report
    from netvlad.numerics import numeric_environment

    sizes = protocol_eval.image_sizes(dataset, model.config.preprocessing)
    extra = {"dataset": dataset.name, "engine": engine, "numerics": numeric_environment() | {"engine": engine}}
    extra |= protocol_run.report(sizes) if protocol_run else {"image_sizes": sizes}
    if sequence_result is not None:
        extra["sequence_recall"] = sequence_result.summary()
    extra |= write_verified(verified, dataset, result, args.output)
    written = write_report(result, dataset, args.output, label, extra, conditions, pictures=args.pictures,
                           radius=args.radius)
    if sequence_result is not None:
        from netvlad.eval.sequence import add_sequence_columns

        add_sequence_columns(report_paths(args.output)["csv"], sequence_result, dataset.database)
    print("wrote " + ", ".join(str(p) for p in written))


def run_sequences(args: argparse.Namespace, model, dataset, sequence, common: dict):
    """Single-frame and sequence results (``--sequence``) over descriptors extracted once."""
    from netvlad.cli.sequence_args import encoder_from_args
    from netvlad.eval.sequence import evaluate_sequences

    encoder = encoder_from_args(args, sequence, model.output_dim)
    extract = {k: common[k] for k in ("batch_size", "workers", "device", "progress", "skip_bad", "dtype", "engine")}
    return evaluate_sequences(model, dataset, sequence, args.sequence_method, encoder=encoder,
                              radius=EVAL_RADIUS_M if args.radius is None else args.radius, ns=common["ns"],
                              store_dir=common["store_dir"], index_config=common["index_config"],
                              max_memory=common["max_memory"], **extract)


def register(subparsers) -> None:
    """Add ``netvlad evaluate``."""
    parser = subparsers.add_parser("evaluate", help="Recall@N of a model on a dataset",
                                   description="Recall@N of a checkpoint or an off-the-shelf backbone on a "
                                               "dataset, printed as a table; with --output FILE.json also a JSON "
                                               "summary, a per-query CSV and pictures beside it (nothing is "
                                               "written without --output).")
    add_dataset_args(parser)
    add_model_args(parser)
    add_device_args(parser)
    add_engine_arg(parser)
    add_extract_args(parser)
    add_index_args(parser)
    add_verify_args(parser)
    group = parser.add_argument_group("evaluation")
    add_protocol_args(group)
    add_sequence_args(parser)
    group.add_argument("--radius", type=number(POSITIVE), default=None,
                       help=f"metres within which a database image is correct (default {EVAL_RADIUS_M:g})")
    group.add_argument("--recall", type=parse_ns, default=(1, 5, 10, 20), help="N values, e.g. 1,5,10,20")
    group.add_argument("--output", type=output(), default=None,
                       help="results JSON; the CSV, Recall@N PNG and retrieval picture go beside it (default: "
                            "none, the table is printed only)")
    add_pictures_arg(group)
    parser.set_defaults(func=run)
