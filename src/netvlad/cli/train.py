"""`netvlad train`: weakly supervised NetVLAD training; every TrainConfig key is a flag and a config-file key."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import types
import typing
from pathlib import Path

import torch

from netvlad.cli.common import pick_device
from netvlad.cli.dataset_args import add_dataset_args, dataset_from_args
from netvlad.files import atomic_write
from netvlad.train import TrainConfig, read_config_file, train
from netvlad.train.config import field_types

logger = logging.getLogger(__name__)

DATASET_RECORD = "dataset.json"  # the dataset arguments of a run, so --resume needs only the run folder
DATASET_KEYS = ("dataset", "format", "split", "database", "queries", "image_root", "frame_tolerance", "spacing",
                "skip_bad")

HELP = {
    "size": "H W for --resize fixed, S for longest", "init_model": "start from this checkpoint (skips k-means)",
    "val_places": "hold out the last N places for validation (Recall@1/5/10 each epoch, best by R@5)",
    "mining": "full, or partial (mine within a random database subset)", "optimizer": "sgd or adam",
    "whitening_dim": "fit PCA whitening to this size at the end", "epoch_queries": "cap on queries per epoch",
}


def _flag_kwargs(annotation) -> dict:
    """argparse keyword arguments for a config field of type ``annotation``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # X | None
        inner = [a for a in typing.get_args(annotation) if a is not type(None)][0]
        return {"type": lambda text, t=inner: None if text.lower() == "none" else t(text)}
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(annotation) is tuple:
        return {"type": typing.get_args(annotation)[0], "nargs": "+"}
    return {"type": annotation}


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per TrainConfig field (default: the config file's value, else the built-in default)."""
    group = parser.add_argument_group("training options (also config-file keys; defaults from the paper)")
    types_ = field_types()
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else None
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=argparse.SUPPRESS,
                           help=f"{HELP.get(f.name, '')} (default: {default})".strip(), **_flag_kwargs(types_[f.name]))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from built-in defaults, then ``--config FILE``, then explicit flags."""
    values = read_config_file(args.config) if args.config else {}
    TrainConfig.from_dict(values, source=str(args.config))  # unknown keys → error naming the file
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return TrainConfig.from_dict(values, source="command line")


def dataset_record(args: argparse.Namespace, run_dir: Path) -> argparse.Namespace:
    """A fresh run records its dataset arguments in ``run_dir/dataset.json``; ``--resume`` without DATASET reads
    them back (with DATASET, the given arguments are used)."""
    path = run_dir / DATASET_RECORD
    if args.dataset is None:
        if not args.resume:
            raise ValueError("give the DATASET to train on")
        if not path.is_file():
            raise ValueError(f"{path}: no recorded dataset arguments (a run from an older version); "
                             "give DATASET and its options again")
        return argparse.Namespace(**(vars(args) | json.loads(path.read_text())))
    if not args.resume:
        record = {k: getattr(args, k) for k in DATASET_KEYS} | {"dataset": str(Path(args.dataset).resolve())}
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    return args


def run_train(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        run_dir = Path(args.resume)
        config = TrainConfig.from_dict(read_config_file(run_dir / "config.yaml"), source=str(run_dir))
    else:
        run_dir, config = Path(args.out), config_from_args(args)
        if (run_dir / "state.pt").exists():
            raise ValueError(f"{run_dir}: already holds a training run; continue it with --resume {run_dir} "
                             "or choose another --out")
    args = dataset_record(args, run_dir)
    logger.info("seed %d, %d torch threads (the same seed and thread count give the same weights)", config.seed,
                torch.get_num_threads())
    out = train(config, dataset_from_args(args), run_dir, device=pick_device(args.device), resume=bool(args.resume),
                progress=not args.no_progress)
    print(out)
    return 0


def register(subparsers) -> None:
    """Add ``netvlad train``."""
    parser = subparsers.add_parser(
        "train", help="train NetVLAD from GPS-tagged images (weakly supervised ranking loss, hard negatives)",
        description="Train NetVLAD as the paper does: k-means cluster init, then SGD on the triplet ranking "
                    "loss with hard negatives mined from a descriptor cache. Resumable; runs under torchrun.")
    add_dataset_args(parser, optional=True)  # --resume reads it from the run folder
    parser.add_argument("--out", default="runs/train", help="run folder (config, logs, checkpoints)")
    parser.add_argument("--config", help="YAML or TOML file of training options (flags override it)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR exactly (DATASET and its options are recorded there)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (1 is fastest on a busy machine; default: torch's choice)")
    add_config_args(parser)
    parser.set_defaults(func=run_train)
