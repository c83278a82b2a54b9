"""Shared CLI pieces: device choice, and a model from ``--model CKPT`` or ``--backbone/--pool``."""

from __future__ import annotations

import argparse

import torch

from netvlad.models import ModelConfig, PlaceModel, Preprocessing, list_backbones, load
from netvlad.models.place_model import POOLS


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default)")
    parser.add_argument("--workers", type=int, default=2, help="image-decoding worker processes")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (a checkpoint, or an off-the-shelf backbone + pooling)")
    group.add_argument("--model", help="a netvlad checkpoint (.safetensors)")
    group.add_argument("--backbone", default="mobilenet_v2", choices=list_backbones())
    group.add_argument("--pool", default="netvlad", choices=sorted(POOLS))
    group.add_argument("--clusters", type=int, default=64, help="NetVLAD K")
    group.add_argument("--parametrization", default="official", choices=("official", "paper"))
    group.add_argument("--no-pretrained", action="store_true", help="random backbone weights")
    group.add_argument("--resize", choices=("none", "fixed", "longest"), default=None,
                       help="override the model's input-size policy")
    group.add_argument("--size", type=int, nargs="+", default=None, help="H W for fixed, S for longest")


def model_from_args(args: argparse.Namespace) -> PlaceModel:
    """Load ``--model`` or build ``--backbone``/``--pool``; ``--resize/--size`` override preprocessing."""
    if args.model:
        model = load(args.model)
    else:
        config = ModelConfig(backbone=args.backbone, pool=args.pool, num_clusters=args.clusters,
                             parametrization=args.parametrization)
        model = PlaceModel(config, pretrained=not args.no_pretrained)
    if args.resize or args.size:
        import dataclasses  # noqa: PLC0415

        pre = model.config.preprocessing
        pre = Preprocessing(resize=args.resize or pre.resize, size=tuple(args.size or pre.size), mean=pre.mean,
                            std=pre.std, value_scale=pre.value_scale)
        model.config = dataclasses.replace(model.config, preprocessing=pre)
    return model.eval()
