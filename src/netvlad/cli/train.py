"""`netvlad train`: weakly supervised NetVLAD training; every TrainConfig key is a flag and a config-file key."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import types
import typing
from pathlib import Path

from netvlad.cli.options import add_dataset_args, add_numerics_args, existing, number, output
from netvlad.errors import BadInputError
from netvlad.train.optim import OPTIMIZERS, SCHEDULERS
from netvlad.train.train_config import LIMITS, TrainConfig, field_types, read_config_file

logger = logging.getLogger(__name__)

HELP = {
    "size": "H W for --resize fixed, S for longest", "init_model": "start from this checkpoint (skips k-means)",
    "val_places": "hold out the last N places for validation (Recall@1/5/10 each epoch, best by R@5)",
    "mining": "full, or partial (mine within a random database subset)",
    "optimizer": OPTIMIZERS.describe(), "scheduler": SCHEDULERS.describe(),
    "min_positive_distance": "database images closer than this (m) are the query's own capture, never positives "
                             "(default: 1 m as the official code, 0 for sequences)",
    "exclude_dark_below": "exclude training images whose mean grey level (0-255) is below this (tunnels, night)",
    "exclude_duplicates_above": "exclude training images whose 32x64 grey thumbnail correlates above this with one "
                                "beyond --neg-radius (a train at a stop)",
    "alpha_average": "geometric: α as the official code, ln 100 / mean top-2 gap; arithmetic: mean ratio 100",
    "loss_normalization": "violating_mean (official MATLAB: ÷ violating triplets in the batch), sum (paper's eq. 7: "
                          "Σ over negatives, mean over tuples; ~10× the step), negative_mean (÷ negatives)",
    "channels_last": "NHWC convolutions in training (faster on CPU; same maths, not bit for bit)",
    "whitening_dim": "fit PCA whitening to this size at the end", "epoch_queries": "cap on queries per epoch",
    "engine": "cache refresh and validation: torch, onnxruntime (the current weights exported at each) or auto",
    "fast_decode": "decode JPEGs at reduced scale (1/2, 1/4 or 1/8) before the resize: faster, the model keeps it "
                   "(default: a full decode, as the reference pipelines)",
}
CHOICES = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}  # fields whose values are registered names
FLAGS = {"num_clusters": "--clusters"}  # fields whose flag every other command spells so (the config key is the field)


def flag_of(name: str) -> str:
    """The command-line flag of the TrainConfig field ``name``."""
    return FLAGS.get(name, f"--{name.replace('_', '-')}")


def checkpoint_file(text: str) -> str:
    """``--init-model``: an existing file, kept as text (the config stores it as a string)."""
    return str(existing("file", "checkpoint")(text))


def _optional(parse):
    """``none`` -> None, anything else through ``parse``."""
    def optional(text: str):
        return None if text.lower() == "none" else parse(text)

    optional.__name__ = parse.__name__
    if hasattr(parse, "limit"):
        optional.limit = parse.limit
    return optional


def _flag_kwargs(name: str, annotation) -> dict:
    """argparse keyword arguments for the config field ``name`` of type ``annotation``."""
    if name == "init_model":
        return {"type": _optional(checkpoint_file)}
    if name in CHOICES:
        return {"choices": CHOICES[name].names()}
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)  # X | None
    inner = [a for a in typing.get_args(annotation) if a is not type(None)][0] if optional else annotation
    if inner is bool:
        return {"action": argparse.BooleanOptionalAction}
    kwargs = {}
    if typing.get_origin(inner) is tuple:
        inner, kwargs = typing.get_args(inner)[0], {"nargs": "+"}
    parse = number(LIMITS[name]) if name in LIMITS else inner
    return {"type": _optional(parse) if optional else parse, **kwargs}


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per TrainConfig field (default: the config file's value, else the built-in default)."""
    group = parser.add_argument_group("training options (also config-file keys; defaults from the paper)")
    types_ = field_types()
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else None
        group.add_argument(flag_of(f.name), dest=f.name, default=argparse.SUPPRESS,
                           help=f"{HELP.get(f.name, '')} (default: {default})".strip(),
                           **_flag_kwargs(f.name, types_[f.name]))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from built-in defaults, then ``--config FILE``, then explicit flags."""
    values = read_config_file(args.config) if args.config else {}
    TrainConfig.from_dict(values, source=str(args.config))  # unknown keys or bad values → error naming the file
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return TrainConfig.from_dict(values, source="command line")


def run_train(args: argparse.Namespace) -> int:
    """Train (or continue) a run and print the best checkpoint."""
    from netvlad.cli.options import check_pair, dataset_options, dataset_source, pick_device
    from netvlad.numerics import check_resumed_numerics
    from netvlad.train.dataset_record import train_run

    if args.resume:
        run_dir = Path(args.resume)
        check_resumed_numerics(run_dir)  # before anything is read or written
        config = TrainConfig.from_dict(read_config_file(run_dir / "config.yaml"), source=str(run_dir))
    else:
        run_dir, config = Path(args.out), config_from_args(args)
        if (run_dir / "state.pt").exists():
            raise BadInputError(f"{run_dir}: already holds a training run; continue it or write elsewhere",
                                path=run_dir, hint=f"--resume {run_dir}, or another --out")
    # DATASET, or two bags named by --database/--queries; a resume without them reads the run's record
    given = args.dataset is not None or bool(args.database and args.queries)
    if given:
        check_pair(args)
    out = train_run(config, run_dir, dataset_source(args) if given else None,
                    dataset_options(args) if given else None, device=pick_device(args.device),
                    resume=bool(args.resume), progress=not args.no_progress)
    print(out)
    return 0


def register(subparsers) -> None:
    """Add ``netvlad train``."""
    parser = subparsers.add_parser(
        "train", help="train NetVLAD from GPS-tagged images (weakly supervised ranking loss, hard negatives)",
        description="Train NetVLAD as the paper does: k-means cluster init, then SGD on the triplet ranking "
                    "loss with hard negatives mined from a descriptor cache. Resumable; runs under torchrun.")
    add_dataset_args(parser, optional=True)  # --resume reads it from the run folder
    parser.add_argument("--out", default="runs/train", type=output("folder"),
                        help="run folder (config, logs, checkpoints)")
    parser.add_argument("--config", type=existing("file", "config file"),
                        help="YAML or TOML file of training options (flags override it)")
    parser.add_argument("--resume", metavar="RUN_DIR", type=existing("folder", "run folder"),
                        help="continue the run in RUN_DIR exactly (DATASET and its options are recorded there)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default)")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide progress bars (shown only when standard error is a terminal)")
    add_numerics_args(parser, default=False)
    add_config_args(parser)
    parser.set_defaults(func=run_train)
