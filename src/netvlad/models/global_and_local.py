"""A place model that also returns the feature maps of its first backbone stages, from the one pass that gives
its descriptors: what the local features of geometric verification are taken from (torch's traced runner and the
ONNX export with the feature maps both run this graph)."""

from __future__ import annotations

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
        self.model, self.early, self.late = model, stages[:int(cut)], stages[int(cut):]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        local = self.early(self.model.normalize(images))
        return self.model.pool_features(self.late(local)), local
