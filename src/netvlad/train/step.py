"""One optimisation step: encode a batch of tuples (query, positive, negatives) and apply the ranking loss."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from netvlad.data.images import load_image
from netvlad.models import PlaceModel
from netvlad.train.distributed import DistInfo, all_sum
from netvlad.train.frozen import FrozenFeatures, head
from netvlad.train.loss import Normalization, hinge_terms, normalized_sum
from netvlad.train.mining import MinedTuples


class GroupEncoder(nn.Module):
    """Encode same-size image groups in one forward call (DDP wants one forward per backward).

    With ``frozen`` features, the groups are frozen-stage outputs and only the trainable head runs.
    ``channels_last``: feed the groups as NHWC (with :func:`use_channels_last` on the model; faster on CPU,
    equal to ~1e-8, not bit for bit).
    """

    def __init__(self, model: PlaceModel, frozen: FrozenFeatures | None = None, channels_last: bool = False) -> None:
        super().__init__()
        self.model, self.frozen, self.channels_last = model, frozen, channels_last

    def forward(self, groups: list[torch.Tensor]) -> torch.Tensor:
        encode = self.model if self.frozen is None else (lambda x: head(self.model, x))
        if self.channels_last:
            groups = [g.contiguous(memory_format=torch.channels_last) if g.dim() == 4 else g for g in groups]
        return torch.cat([encode(inputs) for inputs in groups])


def use_channels_last(model: nn.Module) -> nn.Module:
    """The model's 4-D weights in NHWC layout, in place (parameters stay the same objects; values unchanged)."""
    return model.to(memory_format=torch.channels_last)


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
    images = [load_image(p, pre.resize, pre.size, pre.fast_decode) for p in paths]
    groups: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(i)
    order = [i for members in groups.values() for i in members]
    stacked = [torch.stack([images[i] for i in members]).to(device) for members in groups.values()]
    return stacked, order


@dataclass(frozen=True)
class BatchLayout:
    """The distinct images of a batch of tuples (each loaded and encoded once) and where each tuple's are."""

    paths: list[Path]  # distinct images: queries and database images, first use first
    queries: torch.Tensor  # (B,) rows of ``paths``
    positives: torch.Tensor  # (B,) rows
    negatives: torch.Tensor  # (B, J) rows, 0 where ``mask`` is False
    mask: torch.Tensor  # (B, J) bool, False for padding


def batch_layout(tuples: MinedTuples, query_paths: list[Path], db_paths: list[Path]) -> BatchLayout:
    """Where each tuple's query, positive and negatives are among the batch's distinct images.

    A database image that is one tuple's positive and another's negative (or two tuples' negative) is encoded
    once; its gradient then sums both uses, as two copies' would.
    """
    rows: dict[tuple[str, int], int] = {}

    def row(kind: str, index: int) -> int:
        return rows.setdefault((kind, int(index)), len(rows))

    width = tuples.negatives.shape[1]
    negatives = torch.zeros(len(tuples), width, dtype=torch.long)
    mask = torch.as_tensor(tuples.negatives >= 0)
    queries, positives = [], []
    for b, (q, p, negs) in enumerate(zip(tuples.queries, tuples.positives, tuples.negatives, strict=True)):
        queries.append(row("q", q))
        positives.append(row("d", p))
        for j, n in enumerate(negs):
            if n >= 0:
                negatives[b, j] = row("d", n)
    paths = [query_paths[i] if kind == "q" else db_paths[i] for kind, i in rows]
    return BatchLayout(paths, torch.as_tensor(queries), torch.as_tensor(positives), negatives, mask)


def encode_batch(encoder: nn.Module, model: PlaceModel, paths: list[Path], device: torch.device,
                 frozen: FrozenFeatures | None = None) -> torch.Tensor:
    """Descriptors ``(len(paths), K·D)`` of ``paths`` in their order, from one forward call."""
    groups, order = load_group(paths, model, device, frozen)
    encoded = encoder(groups)
    if order == list(range(len(paths))):
        return encoded
    descriptors = torch.empty_like(encoded)
    descriptors[torch.as_tensor(order, device=device)] = encoded  # back to the order of ``paths``
    return descriptors


def tuple_loss(encoder: nn.Module, model: PlaceModel, tuples: MinedTuples, query_paths: list[Path],
               db_paths: list[Path], margin: float, device: torch.device, frozen: FrozenFeatures | None = None,
               normalization: Normalization = "sum", batch_tuples: int | None = None,
               info: DistInfo | None = None) -> torch.Tensor:
    """This rank's loss on ``tuples``, normalised over the whole batch (``batch_tuples`` tuples on all ranks).

    World × this rank's share, so that DDP's average over ranks is the gradient of the batch loss; one forward
    pass over the tuples' distinct images.
    """
    info = info or DistInfo()
    layout = batch_layout(tuples, query_paths, db_paths)
    descriptors = encode_batch(encoder, model, layout.paths, device, frozen)
    mask = layout.mask.to(device)
    terms = hinge_terms(descriptors[layout.queries.to(device)], descriptors[layout.positives.to(device)].unsqueeze(1),
                        descriptors[layout.negatives.to(device)], margin, mask)
    violating = 0
    if normalization == "violating_mean":
        violating = round(all_sum(float((terms > 0).sum()), info))
    return normalized_sum(terms, mask, normalization, batch_tuples or len(tuples), violating, info.world)


def idle_loss(encoder: nn.Module, model: PlaceModel, path: Path, device: torch.device,
              frozen: FrozenFeatures | None = None) -> torch.Tensor:
    """A zero loss through the model, so that a rank with no tuple still joins the gradient all-reduce."""
    groups, _ = load_group([path], model, device, frozen)
    return encoder(groups).sum() * 0.0
