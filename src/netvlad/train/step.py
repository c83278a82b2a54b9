"""One optimisation step: encode a batch of tuples (query, positive, negatives) and apply the ranking loss."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from netvlad.data.images import load_image
from netvlad.models import PlaceModel
from netvlad.train.frozen import FrozenFeatures, head
from netvlad.train.loss import triplet_ranking_loss
from netvlad.train.mining import MinedTuples


class GroupEncoder(nn.Module):
    """Encode same-size image groups in one forward call (DDP wants one forward per backward).

    With ``frozen`` features, the groups are frozen-stage outputs and only the trainable head runs.
    """

    def __init__(self, model: PlaceModel, frozen: FrozenFeatures | None = None) -> None:
        super().__init__()
        self.model, self.frozen = model, frozen

    def forward(self, groups: list[torch.Tensor]) -> torch.Tensor:
        encode = self.model if self.frozen is None else (lambda x: head(self.model, x))
        return torch.cat([encode(inputs) for inputs in groups])


def frozen_batchnorm_train(model: nn.Module) -> None:
    """Training mode, but every batch-norm keeps its running statistics (small batches; ranks stay equal)."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def load_group(paths: Sequence[Path], model: PlaceModel, device: torch.device,
               frozen: FrozenFeatures | None = None) -> tuple[list[torch.Tensor], list]:
    """Inputs of ``paths`` grouped by size (images, or their frozen features), and the order they come in."""
    if frozen is not None:
        return [frozen.get(paths, device)], list(range(len(paths)))
    pre = model.config.preprocessing
    images = [load_image(p, pre.resize, pre.size) for p in paths]
    groups: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(i)
    order = [i for members in groups.values() for i in members]
    stacked = [torch.stack([images[i] for i in members]).to(device) for members in groups.values()]
    return stacked, order


def tuple_loss(encoder: nn.Module, model: PlaceModel, tuples: MinedTuples, query_paths: list[Path],
               db_paths: list[Path], margin: float, scale: float, device: torch.device,
               frozen: FrozenFeatures | None = None) -> torch.Tensor:
    """``scale`` × Σ over ``tuples`` of the per-query ranking loss (one forward pass over all their images)."""
    paths, slots = [], []
    for q, p, negs in zip(tuples.queries, tuples.positives, tuples.negatives, strict=True):
        negs = negs[negs >= 0]
        slots.append((len(paths), len(negs)))
        paths += [query_paths[q], db_paths[p], *(db_paths[n] for n in negs)]
    groups, order = load_group(paths, model, device, frozen)
    encoded = encoder(groups)
    descriptors = torch.empty_like(encoded)
    descriptors[torch.as_tensor(order, device=device)] = encoded  # back to the order of ``paths``
    width = tuples.negatives.shape[1]
    index = torch.zeros(len(slots), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(slots), width, dtype=torch.bool, device=device)
    for row, (start, count) in enumerate(slots):
        index[row, :count] = torch.arange(start + 2, start + 2 + count)
        mask[row, :count] = True
    starts = torch.as_tensor([s for s, _ in slots], device=device)
    losses = triplet_ranking_loss(descriptors[starts], descriptors[starts + 1].unsqueeze(1), descriptors[index],
                                  margin, mask)
    return losses.sum() * scale


def idle_loss(encoder: nn.Module, model: PlaceModel, path: Path, device: torch.device,
              frozen: FrozenFeatures | None = None) -> torch.Tensor:
    """A zero loss through the model, so that a rank with no tuple still joins the gradient all-reduce."""
    groups, _ = load_group([path], model, device, frozen)
    return encoder(groups).sum() * 0.0
