"""``--sequence L`` and its options for ``netvlad evaluate``: sequence matching beside single-frame Recall@N."""

from __future__ import annotations

import argparse

from netvlad.cli.common import existing, number
from netvlad.errors import BadInputError
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
                       help="; ".join(f"{name}: {METHODS.get(name)}" for name in METHODS.names())
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
SETTINGS = {"shortlist": "--shortlist", "propagate": "--propagate", "velocities": "--velocities",
            "contrast_radius": "--contrast-radius"}
APPLIES = {"seqslam": set(SETTINGS), "seqnet": set(SETTINGS), "diagonal": {"velocities"}, "delta": set()}
WHY = {"diagonal": "it scores every database frame with raw distances: no shortlist, no normalisation",
       "delta": "it searches Delta descriptors: no trajectories, no shortlist re-ranking"}


def refuse_inapplicable(args: argparse.Namespace) -> None:
    """Refuse matcher settings the chosen method would not read, and a shortlist that makes SeqSLAM the single
    frame ranking (one candidate, none carried)."""
    method = args.sequence_method
    for dest, flag in SETTINGS.items():
        if dest not in APPLIES[method] and getattr(args, dest) != getattr(DEFAULT, dest):
            raise BadInputError(f"{flag} does not apply to --sequence-method {method} ({WHY[method]}); drop it")
    if method in ("seqslam", "seqnet") and args.shortlist == 1 and args.propagate == 0:
        raise BadInputError("--shortlist 1 with --propagate 0 leaves one candidate per query frame: the ranking "
                            "would be the single-frame one; give --shortlist ≥ 2 or --propagate ≥ 1")


def encoder_from_args(args: argparse.Namespace, config, descriptor_dim: int):
    """The SeqNet encoder of ``--sequence-model`` (checked against the descriptors' dim and L), or None."""
    if args.sequence_model is None:
        return None
    from netvlad.match.seqnet import seqnet_encoder
    from netvlad.models.seqnet import load_seqnet

    model = load_seqnet(args.sequence_model, descriptor_dim=descriptor_dim, length=config.length)
    return seqnet_encoder(model)
