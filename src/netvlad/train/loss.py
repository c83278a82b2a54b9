"""The paper's weakly supervised triplet ranking loss (Arandjelović et al., CVPR 2016, eq. 7) and how a batch of
them is normalised.

Normalisations of a batch of B tuples with hinge terms t_bj (j over the tuple's n_b negatives):
  - ``"sum"``: (1/B) Σ_b Σ_j t_bj, the paper's eq. 7 summed over negatives, averaged over tuples;
  - ``"negative_mean"``: (1/B) Σ_b (1/n_b) Σ_j t_bj, the mean over each tuple's negatives;
  - ``"violating_mean"``: Σ_b Σ_j t_bj / #{t_bj > 0}, what the official MATLAB code does (trainWeakly.m divides
    the summed gradients by the number of violating triplets in the batch).
For the same step, "negative_mean" needs the lr × mean n_b and "violating_mean" × the mean number of violating
negatives per tuple (≤ n_b; about n_b right after a cache refresh, as mining keeps violating negatives only).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Normalization = Literal["sum", "negative_mean", "violating_mean"]
NORMALIZATIONS: tuple[str, ...] = ("sum", "negative_mean", "violating_mean")


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

    Examples:
        >>> query = torch.tensor([[1.0, 0.0]])
        >>> positives = torch.tensor([[[0.6, 0.8]]])  # d² = 0.8
        >>> negatives = torch.tensor([[[0.8, 0.6], [0.0, 1.0]]])  # d² = 0.4 (violates the margin) and 2.0
        >>> triplet_ranking_loss(query, positives, negatives, margin=0.1)  # 0.8 + 0.1 - 0.4
        tensor([0.5000])
        >>> triplet_ranking_loss(query, positives, negatives, negative_mask=torch.tensor([[False, True]]))
        tensor([0.])
    """
    if query.dim() != 2 or positives.dim() != 3 or negatives.dim() != 3:
        raise ValueError(f"expected query (B, D), positives (B, P, D), negatives (B, J, D); got "
                         f"{tuple(query.shape)}, {tuple(positives.shape)}, {tuple(negatives.shape)}")
    return hinge_terms(query, positives, negatives, margin, negative_mask).sum(dim=1)


def hinge_terms(query: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, margin: float = 0.1,
                negative_mask: torch.Tensor | None = None) -> torch.Tensor:
    """max(0, min_i d²(q, p_i) + m − d²(q, n_j)): ``(B, D)``, ``(B, P, D)``, ``(B, J, D)`` -> ``(B, J)``, 0 where
    ``negative_mask`` ``(B, J)`` is False."""
    best_positive = squared_distances(query, positives).min(dim=1).values  # (B,)
    terms = torch.relu(best_positive.unsqueeze(1) + margin - squared_distances(query, negatives))
    return terms if negative_mask is None else terms * negative_mask.to(terms.dtype)


def normalized_sum(terms: torch.Tensor, mask: torch.Tensor, normalization: Normalization, tuples: int,
                   violating: int, world: int = 1) -> torch.Tensor:
    """``world`` × this rank's share of the batch loss, from its hinge ``terms`` ``(B, J)`` and ``mask`` ``(B, J)``.

    ``tuples`` and ``violating`` (terms > 0) count the whole batch over all ranks; DDP's gradient average over
    ``world`` ranks then gives the gradient of the batch loss.
    """
    if normalization == "sum":
        return terms.sum(dim=1).sum() * (world / tuples)
    if normalization == "negative_mean":
        return (terms.sum(dim=1) / mask.sum(dim=1).clamp(min=1).to(terms.dtype)).sum() * (world / tuples)
    if normalization == "violating_mean":
        return terms.sum(dim=1).sum() * (world / max(violating, 1))
    raise ValueError(f"loss normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")


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
