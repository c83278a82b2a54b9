"""A place model that also returns the feature maps of its first backbone stages, from the one pass that gives
its descriptors: what the local features of geometric verification are taken from (torch's traced runner and the
ONNX export with the feature maps both run this graph)."""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from netvlad.models.place_model import PlaceModel


class GlobalAndLocal(nn.Module):
    """A place model returning both its descriptors and the feature maps of its first ``cut`` backbone stages,
    from one pass.

    Shape:
        ``(B, 3, H, W)`` RGB in [0, 1] -> (``(B, dim)`` descriptors, ``(B, C, h, w)`` feature maps).
    """

    foldable = ("early", "late")  # netvlad.models.folding folds the batch norms of each

    def __init__(self, model: PlaceModel, cut: int) -> None:
        super().__init__()
        stages = model.backbone.stages
        self.model, self.early, self.late = model, stages[:int(cut)], _out_of_place(stages[int(cut):])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        local = self.early(self.model.normalize(images))
        return self.model.pool_features(self.late(local)), local


def _out_of_place(late: nn.Sequential) -> nn.Sequential:
    """``late`` with an in-place first stage (VGG's ReLU after a convolution, ResNet's after ``bn1``) replaced by an
    out-of-place copy, so that the maps returned are the early stages' output and not the activation's; the
    caller's modules and the stage names are kept."""
    stages = list(late._modules.items())
    if not stages or not getattr(stages[0][1], "inplace", False):
        return late
    first = copy.deepcopy(stages[0][1])  # an activation: nothing learned to share
    first.inplace = False
    return nn.Sequential(OrderedDict([(stages[0][0], first), *stages[1:]]))
