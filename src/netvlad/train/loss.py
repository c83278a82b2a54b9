"""The paper's weakly supervised triplet ranking loss (Arandjelović et al., CVPR 2016, eq. 7)."""

from __future__ import annotations

import torch
from torch import nn


def squared_distances(query: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(B, D)``, ``(B, M, D)`` -> ``(B, M)``."""
    return (others - query.unsqueeze(1)).pow(2).sum(-1)


def triplet_ranking_loss(
    query: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    margin: float = 0.1,
    negative_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per query Σ_j max(0, min_i d²(q, p_i) + m − d²(q, n_j)), squared Euclidean d.

    Shape:
        - query ``(B, D)``, positives ``(B, P, D)``, negatives ``(B, J, D)``
        - negative_mask ``(B, J)`` bool, False for padding (those terms count 0)
        - output ``(B,)``, one loss per query (sum over its negatives, not a mean)
    """
    if query.dim() != 2 or positives.dim() != 3 or negatives.dim() != 3:
        raise ValueError(f"expected query (B, D), positives (B, P, D), negatives (B, J, D); got "
                         f"{tuple(query.shape)}, {tuple(positives.shape)}, {tuple(negatives.shape)}")
    best_positive = squared_distances(query, positives).min(dim=1).values  # (B,)
    terms = torch.relu(best_positive.unsqueeze(1) + margin - squared_distances(query, negatives))  # (B, J)
    if negative_mask is not None:
        terms = terms * negative_mask.to(terms.dtype)
    return terms.sum(dim=1)


class TripletRankingLoss(nn.Module):
    """Module form of :func:`triplet_ranking_loss`; ``reduction`` over queries: ``"mean"``, ``"sum"`` or ``"none"``."""

    def __init__(self, margin: float = 0.1, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
        self.margin, self.reduction = margin, reduction

    def forward(self, query, positives, negatives, negative_mask=None) -> torch.Tensor:
        losses = triplet_ranking_loss(query, positives, negatives, self.margin, negative_mask)
        return losses if self.reduction == "none" else getattr(losses, self.reduction)()
