"""``--protocol NAME`` for ``netvlad evaluate``: the option, its conflicts with other options, and its report."""

from __future__ import annotations

import argparse

from netvlad.errors import BadInputError
from netvlad.eval.protocols import PROTOCOLS, Protocol, list_protocols

# option name, attribute, the protocol field it must agree with
SETTINGS = (("--split", "split", "split"), ("--database", "database", "database"), ("--queries", "queries", "queries"),
            ("--frame-tolerance", "frame_tolerance", "frame_tolerance"), ("--radius", "radius", "radius"))


def add_protocol_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--protocol``."""
    parser.add_argument("--protocol", choices=list_protocols(), default=None, metavar="NAME",
                        help="a published benchmark's protocol: sets split, query/database folders, radius or frame "
                             "tolerance and input size, and checks the dataset (" + ", ".join(PROTOCOLS) + ")")


def check_protocol_args(args: argparse.Namespace, protocol: Protocol) -> None:
    """Refuse options that contradict the protocol (the protocol sets them)."""
    for option, attr, key in SETTINGS:
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
