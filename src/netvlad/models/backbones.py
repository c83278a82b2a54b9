"""Backbones: a registered CNN (:mod:`netvlad.models.backbone_specs`) built and cropped, its early stages frozen.

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

import torch
from torch import nn

from netvlad.models.backbone_specs import (  # noqa: F401 - the registry, re-exported
    BACKBONES,
    BackboneSpec,
    get_backbone_spec,
    list_backbones,
    register_backbone,
)
from netvlad.models.weights import load_state_dict, resolve_weights

_REGISTRY = BACKBONES  # the registry's former private name

logger = logging.getLogger(__name__)


class Backbone(nn.Module):
    """A CNN cropped at its last used layer: ``(B, 3, H, W)`` normalised images -> ``(B, C, H/s, W/s)``.

    Stages before ``train_from`` are frozen (no gradients, batch-norm statistics fixed).

    Shape:
        - input: ``(B, 3, H, W)`` normalised images
        - output: ``(B, C, ⌈H/s⌉, ⌈W/s⌉)`` with C = ``spec.channels`` and s = ``spec.stride``

    Examples:
        >>> backbone = Backbone(get_backbone_spec("mobilenet_v2"), pretrained=False)
        >>> backbone(torch.rand(1, 3, 64, 96)).shape
        torch.Size([1, 1280, 2, 3])
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
