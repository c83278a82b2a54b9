"""`netvlad evaluate DATASET`: Recall@N of a checkpoint or an off-the-shelf model, with a JSON/CSV/PNG report;
``--protocol NAME`` (a published benchmark's settings), ``--sequence L`` (sequence matching beside single-frame
Recall@N) and ``--verify PRESET`` (spatial re-ranking) are its options here."""

from __future__ import annotations

import argparse
import functools
import logging

from netvlad.cli.options import (
    add_dataset_args,
    add_device_args,
    add_engine_arg,
    add_extract_args,
    add_index_args,
    add_model_args,
    add_pictures_arg,
    add_verify_args,
    existing,
    number,
    output,
    parse_ns,
)
from netvlad.constants import EVAL_RADIUS_M
from netvlad.errors import BadInputError
from netvlad.eval.protocols import PROTOCOLS, Protocol, list_protocols
from netvlad.limits import POSITIVE
from netvlad.match.sequence import (
    CONTRAST_RADIUS,
    DEFAULT,
    DEFAULT_METHOD,
    LENGTH,
    METHODS,
    PROPAGATE,
    SHORTLIST,
    VELOCITY,
)

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    """Evaluate (under ``--protocol`` when given), print the tables, and write the report files."""
    from netvlad.eval.report import condition_table, pr_line
    from netvlad.pipeline.evaluate import run_evaluation

    out = run_evaluation(settings_from_args(args))
    result, protocol = out.result, out.protocol
    print(out.opened)
    print(f"{out.label}: {result.num_queries} queries, {result.num_database} database images, "
          f"{result.descriptor_dim}-D descriptors" + (f", protocol {protocol.name}" if protocol else ""))
    print(result.table() if out.sequence_result is None else out.sequence_result.table(result))
    print(pr_line(result))
    if out.verified is not None:
        print_verified(out.verified)
    if out.protocol_run and out.protocol_run.per_group:
        print(group_table(out.protocol_run.per_group, protocol.group_by or "group"))
    if out.held_out:
        print(condition_table(out.held_out).replace("| condition |", "| places |", 1))
    if out.by_condition and len(out.by_condition) > 1:
        print(condition_table(out.by_condition))
    if out.verified_csv is not None:
        print(f"wrote {out.verified_csv}")
    if out.written:
        print("wrote " + ", ".join(str(p) for p in out.written))
    return 0


def settings_from_args(args: argparse.Namespace):
    """The :class:`~netvlad.pipeline.evaluate.EvaluationSettings` of the command line, refusing the combinations
    not supported before anything is loaded."""
    from netvlad.cli.options import (
        check_pair,
        cluster_cache,
        clustering,
        dataset_options,
        dataset_source,
        default_engine,
        index_config_from_args,
        max_memory_from_args,
        model_from_args,
        pick_device,
        preset_from_args,
        refuse_model_args,
    )
    from netvlad.eval.protocols import get_protocol
    from netvlad.pipeline.evaluate import EvaluationSettings, refuse_sequence_with_protocol

    sequence = sequence_config_from_args(args)
    protocol = get_protocol(args.protocol) if args.protocol else None
    refuse_sequence_with_protocol(sequence, protocol)
    if protocol:
        check_protocol_args(args, protocol)
    else:
        check_pair(args)
    refuse_model_args(args)
    source, options = dataset_source(args), dataset_options(args)
    device = pick_device(args.device)
    return EvaluationSettings(
        model=None, load_model=functools.partial(model_from_args, args), source=source, dataset_options=options,
        checkpoint=args.model, protocol=protocol, sequence=sequence, sequence_method=args.sequence_method,
        sequence_model=args.sequence_model, verify=preset_from_args(args), verify_top=args.verify_top,
        ns=args.recall, radius=args.radius, device=device, engine=getattr(args, "engine", None) or default_engine(),
        store=args.store, dtype=args.dtype, skip_bad=args.skip_bad, batch_size=args.batch_size, workers=args.workers,
        progress=not args.no_progress, index_config=index_config_from_args(args, device),
        max_memory=max_memory_from_args(args), cluster=clustering(args)["config"], cluster_cache=cluster_cache(args),
        places=args.places, output=args.output, pictures=args.pictures)


def place_range(text: str):
    """``--places A:B``: a :class:`~netvlad.data.place_range.PlaceRange`, or a one-line usage error."""
    from netvlad.data.place_range import PlaceRange

    try:
        return PlaceRange.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def print_verified(verified) -> None:
    """The re-ranked table and one line of its cost."""
    print(verified.table())
    summary = verified.summary()["verify"]
    print(f"re-ranking {verified.preset.name}: {summary['rerank_seconds_per_query'] * 1000:.1f} ms per query (top "
          f"{verified.top}), patch store {summary['store_bytes_per_image'] / 1e6:.3f} MB per image"
          + (f", {summary['skipped_sizes']} (image, size) pairs skipped: images smaller than the patch"
             if summary["skipped_sizes"] else ""))


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
    group.add_argument("--places", type=place_range, default=None, metavar="A:B",
                       help="a sequence's places A to B−1 only (database and queries), e.g. the validation places a "
                            "checkpoint was not trained on")
    group.add_argument("--recall", type=parse_ns, default=(1, 5, 10, 20), help="N values, e.g. 1,5,10,20")
    group.add_argument("--output", type=output(), default=None,
                       help="results JSON; the CSV, Recall@N PNG and retrieval picture go beside it (default: "
                            "none, the table is printed only)")
    add_pictures_arg(group)
    parser.set_defaults(func=run)


# option name, attribute, the protocol field it must agree with
PROTOCOL_SETTINGS = (("--split", "split", "split"), ("--database", "database", "database"),
                     ("--queries", "queries", "queries"), ("--frame-tolerance", "frame_tolerance", "frame_tolerance"),
                     ("--radius", "radius", "radius"))


def add_protocol_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--protocol``."""
    parser.add_argument("--protocol", choices=list_protocols(), default=None, metavar="NAME",
                        help="a published benchmark's protocol: sets split, query/database folders, radius or frame "
                             "tolerance and input size, and checks the dataset (" + ", ".join(PROTOCOLS) + ")")


def check_protocol_args(args: argparse.Namespace, protocol: Protocol) -> None:
    """Refuse options that contradict the protocol (the protocol sets them)."""
    for option, attr, key in PROTOCOL_SETTINGS:
        given, wanted = getattr(args, attr, None), getattr(protocol, key)
        if given is not None and given != wanted:
            raise BadInputError(f"--protocol {protocol.name} sets {option} to {wanted}; drop {option} {given} (or "
                                "drop --protocol)")
    if getattr(args, "resize", None) or getattr(args, "size", None):
        size = " " + "x".join(map(str, protocol.size)) if protocol.size else ""
        raise BadInputError(f"--protocol {protocol.name} feeds images as the published tables did ({protocol.resize}"
                            f"{size}); drop --resize/--size (or drop --protocol)")
    if getattr(args, "format", None) and args.format not in protocol.formats:
        raise BadInputError(f"--protocol {protocol.name} reads a {' or '.join(protocol.formats)} dataset; drop "
                            f"--format {args.format}")


def group_table(per_group: dict, label: str) -> str:
    """A markdown table of per-group (city) Recall@N with query and database counts."""
    ns = list(next(iter(per_group.values())).recall) if per_group else []
    lines = [f"| {label} | queries | database | " + " | ".join(f"R@{n}" for n in ns) + " |",
             "|---|---:|---:|" + "---:|" * len(ns)]
    for group, result in per_group.items():
        lines.append(f"| {group} | {result.num_queries} | {result.num_database} | "
                     + " | ".join(f"{result.recall[n]:.1f}" for n in ns) + " |")
    return "\n".join(lines)


def parse_velocities(text: str) -> tuple[float, ...]:
    """``"0.8,1,1.25"`` -> (0.8, 1.0, 1.25) database frames per query frame."""
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        values = ()
    if not values or not all(VELOCITY.accepts(v) for v in values):
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, each {VELOCITY.describe()} (e.g. "
                                         f"0.8,1,1.25), got {text!r}")
    return values


def add_sequence_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--sequence``, ``--sequence-method``, ``--sequence-model``, ``--centred`` and the matcher's settings."""
    group = parser.add_argument_group("sequence matching (queries and database with sequence order)")
    group.add_argument("--sequence", type=number(LENGTH), default=None, metavar="L",
                       help="also report Recall@N of matching L-frame query sequences (e.g. 10)")
    group.add_argument("--sequence-method", default=DEFAULT_METHOD, choices=METHODS.names(),
                       help="; ".join(f"{name}: {METHODS.help(name)}" for name in METHODS.names())
                       + f" (default {DEFAULT_METHOD}: chosen across every set we have, see docs/sequences.md)")
    group.add_argument("--sequence-model", type=existing("file", "SeqNet model"), default=None, metavar="FILE",
                       help="seqnet: a trained SeqNet (.safetensors, its config beside it)")
    group.add_argument("--centred", action="store_true",
                       help="centre each window on its query frame (offline; default causal: the L-1 frames before)")
    group.add_argument("--shortlist", type=number(SHORTLIST), default=DEFAULT.shortlist, metavar="M",
                       help=f"seqslam, seqnet: database frames scored per query frame (default {DEFAULT.shortlist})")
    group.add_argument("--propagate", type=number(PROPAGATE), default=DEFAULT.propagate, metavar="P",
                       help="seqslam, seqnet: also score the top P of each earlier window frame's shortlist, carried "
                            "along the "
                            f"trajectory (0: the current frame's shortlist only; default {DEFAULT.propagate})")
    group.add_argument("--velocities", type=parse_velocities, default=DEFAULT.velocities, metavar="V,V,...",
                       help="database frames per query frame tried by trajectories (default "
                            + ",".join(f"{v:g}" for v in DEFAULT.velocities) + ")")
    group.add_argument("--contrast-radius", type=number(CONTRAST_RADIUS), default=DEFAULT.contrast_radius,
                       metavar="R", help=f"seqslam, seqnet: ±database frames of the contrast normalisation, ≥ 1 "
                                         f"(default {DEFAULT.contrast_radius}; raw distances: --sequence-method "
                                         "diagonal)")


def sequence_config_from_args(args: argparse.Namespace):
    """The :class:`~netvlad.match.SequenceConfig` of the command line, or None without ``--sequence``;
    options that need ``--sequence`` (or another method) are refused."""
    from netvlad.match.sequence import SequenceConfig

    if args.sequence is None:
        given = [flag for flag, attr in (("--sequence-model", "sequence_model"), ("--centred", "centred"))
                 if getattr(args, attr)]
        if given:
            raise BadInputError(f"{given[0]} applies to sequence matching; add --sequence L (e.g. --sequence 10)")
        return None
    if args.sequence_method == "seqnet" and args.sequence_model is None:
        raise BadInputError("--sequence-method seqnet needs --sequence-model SEQNET.safetensors (train one with "
                            "netvlad seqnet or netvlad.train.seqnet)")
    if args.sequence_model is not None and args.sequence_method != "seqnet":
        raise BadInputError(f"--sequence-model is a SeqNet; add --sequence-method seqnet (not "
                            f"{args.sequence_method})")
    refuse_inapplicable(args)
    return SequenceConfig(length=args.sequence, velocities=args.velocities, contrast_radius=args.contrast_radius,
                          shortlist=args.shortlist, centred=args.centred, propagate=args.propagate)


# The matcher settings each method reads; any other one set away from its default would be silently ignored.
MATCHER_SETTINGS = {"shortlist": "--shortlist", "propagate": "--propagate", "velocities": "--velocities",
            "contrast_radius": "--contrast-radius"}


APPLIES = {"seqslam": set(MATCHER_SETTINGS), "seqnet": set(MATCHER_SETTINGS), "diagonal": {"velocities"},
           "diagonal-standardised": {"velocities"}, "diagonal-causal-standardised": {"velocities"}, "delta": set()}


WHY = {"diagonal": "it scores every database frame with raw distances: no shortlist, no normalisation",
       "diagonal-standardised": "it scores every database frame, standardised over every query: no shortlist, no "
                                "contrast window",
       "diagonal-causal-standardised": "it scores every database frame, standardised over the query frames seen so "
                                       "far: no shortlist, no contrast window",
       "delta": "it searches Delta descriptors: no trajectories, no shortlist re-ranking"}


def refuse_inapplicable(args: argparse.Namespace) -> None:
    """Refuse matcher settings the chosen method would not read, and a shortlist that makes SeqSLAM the single
    frame ranking (one candidate, none carried)."""
    method = args.sequence_method
    for dest, flag in MATCHER_SETTINGS.items():
        if dest not in APPLIES[method] and getattr(args, dest) != getattr(DEFAULT, dest):
            raise BadInputError(f"{flag} does not apply to --sequence-method {method} ({WHY[method]}); drop it")
    if method in ("seqslam", "seqnet") and args.shortlist == 1 and args.propagate == 0:
        raise BadInputError("--shortlist 1 with --propagate 0 leaves one candidate per query frame: the ranking "
                            "would be the single-frame one; give --shortlist ≥ 2 or --propagate ≥ 1")
