"""The NetVLAD layer (Arandjelović et al., CVPR 2016, arXiv 1511.07247)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from netvlad.nn import functional as VF

Parametrization = Literal["official", "paper"]
# How α's target ratio is averaged over descriptors: "geometric" is the official code's closed form
# α = −ln(0.01) / mean(gap) (Relja/netvlad addLayers.m, both layer variants); "arithmetic" makes the plain mean
# of the top-1/top-2 ratios 100, which gives a smaller α (by Jensen's inequality).
RatioAverage = Literal["geometric", "arithmetic"]
DEFAULT_RATIO_AVERAGE: RatioAverage = "geometric"
TARGET_RATIO = 100.0  # top-1 / top-2 soft-assignment ratio that α is chosen for


class NetVLAD(nn.Module):
    """NetVLAD pooling: soft-assign local descriptors to K clusters and aggregate residuals.

    ā_k(x_i) = softmax_k(w_kᵀx_i + b_k), V(j, k) = Σ_i ā_k(x_i)(x_i(j) − c_k(j)); w, b and c are
    decoupled parameters. Output: intra-normalised, then globally L2-normalised, cluster-major.

    Args:
        num_clusters: K.
        dim: D, channels of the local descriptors.
        normalize_input: L2-normalise each local descriptor first (the paper's "preL2").
        parametrization: how :meth:`init_from_centroids` sets w, b from c. ``"official"`` (the
            released code): w_k = α·c_k/‖c_k‖, b_k = 0. ``"paper"``: w_k = 2α·c_k, b_k = −α‖c_k‖².
        bias: learn b. Defaults to ``False`` for "official" (its code has none) and ``True`` for "paper".

    Shape:
        - input: ``(B, D, H, W)`` or ``(B, N, D)``
        - output: ``(B, K*D)``

    Examples:
        >>> layer = NetVLAD(num_clusters=8, dim=16)
        >>> layer(torch.randn(2, 16, 5, 7)).shape
        torch.Size([2, 128])
    """

    def __init__(
        self,
        num_clusters: int = 64,
        dim: int = 512,
        normalize_input: bool = True,
        parametrization: Parametrization = "official",
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        if parametrization not in ("official", "paper"):
            raise ValueError(f"parametrization must be 'official' or 'paper', got {parametrization!r}")
        self.num_clusters = num_clusters
        self.dim = dim
        self.normalize_input = normalize_input
        self.parametrization = parametrization
        has_bias = parametrization == "paper" if bias is None else bias
        # A 1×1 convolution, applied as a matrix product over positions (same maths, any layout).
        self.conv = nn.Conv2d(dim, num_clusters, kernel_size=1, bias=has_bias)
        self.centroids = nn.Parameter(torch.empty(num_clusters, dim))
        self.alpha = 1.0
        with torch.no_grad():
            self.init_from_centroids(VF.l2_normalize(torch.randn(num_clusters, dim), dim=1), alpha=10.0)
        self.clustered = False  # random centroids until init_from_centroids or a loaded state dict sets them

    @property
    def output_dim(self) -> int:
        """Length of the output descriptor, K·D."""
        return self.num_clusters * self.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, H, W)`` or ``(B, N, D)`` -> ``(B, K*D)``."""
        weight = self.conv.weight.view(self.num_clusters, self.dim)
        return VF.netvlad(x, weight, self.conv.bias, self.centroids, self.normalize_input)

    def _unit_scores(self, centroids: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        """Assignment scores with α = 1 under this parametrisation: ``(N, D)`` -> ``(N, K)``."""
        if self.parametrization == "official":
            return descriptors @ VF.l2_normalize(centroids, dim=1).T
        # 2cᵀx − ‖c‖² = ‖x‖² − ‖x − c‖²: differences between clusters are differences of squared distances.
        return 2 * descriptors @ centroids.T - (centroids**2).sum(1)

    @torch.no_grad()
    def init_from_centroids(
        self,
        centroids: torch.Tensor,
        descriptors: torch.Tensor | None = None,
        alpha: float | None = None,
        ratio_average: RatioAverage = DEFAULT_RATIO_AVERAGE,
        target_ratio: float = TARGET_RATIO,
    ) -> float:
        """Set c, w and b from centroids ``(K, D)``; α from ``descriptors`` ``(N, D)`` unless given.

        α makes the largest soft assignment on average ``target_ratio`` (100, the official value) × the second
        largest, where Δ_i is the gap between descriptor i's top two unit scores (official: dot products with the
        unit centroids; paper: squared distances). ``"geometric"`` (default) is the official code's closed form
        α = ln(ratio) / mean_i Δ_i, the geometric mean of the ratios being the target; ``"arithmetic"`` solves
        mean_i exp(αΔ_i) = ratio. Returns α.
        """
        if centroids.shape != (self.num_clusters, self.dim):
            raise ValueError(f"centroids must be ({self.num_clusters}, {self.dim}), got {tuple(centroids.shape)}")
        c = centroids.detach().to(torch.float64)
        if alpha is None:
            if descriptors is None:
                raise ValueError("give descriptors to choose α from the data, or α itself")
            x = self.prepare(descriptors)
            gaps = self._unit_scores(c, x).topk(2, dim=1).values
            alpha = choose_alpha(gaps[:, 0] - gaps[:, 1], ratio_average, target_ratio)
        if self.parametrization == "official":
            weight, bias = alpha * VF.l2_normalize(c, dim=1), torch.zeros(self.num_clusters, dtype=c.dtype)
        else:
            weight, bias = 2 * alpha * c, -alpha * (c**2).sum(1)
        self.centroids.copy_(c)
        self.conv.weight.copy_(weight.view_as(self.conv.weight))
        if self.conv.bias is not None:
            self.conv.bias.copy_(bias)
        self.alpha = float(alpha)
        self.clustered = True
        return self.alpha

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.clustered = self.clustered or f"{prefix}centroids" in state_dict  # loaded centroids are set ones

    def prepare(self, descriptors: torch.Tensor) -> torch.Tensor:
        """Local descriptors ``(N, D)`` as the layer sees them: float64, L2-normalised when ``normalize_input``."""
        if descriptors.dim() != 2 or descriptors.shape[1] != self.dim:
            raise ValueError(f"expected local descriptors as (N, {self.dim}), got {tuple(descriptors.shape)}")
        x = descriptors.detach().to(torch.float64)
        return VF.l2_normalize(x, dim=1) if self.normalize_input else x

    def extra_repr(self) -> str:
        return (
            f"num_clusters={self.num_clusters}, dim={self.dim}, normalize_input={self.normalize_input}, "
            f"parametrization={self.parametrization!r}"
        )


def choose_alpha(gaps: torch.Tensor, ratio_average: RatioAverage = DEFAULT_RATIO_AVERAGE,
                 target_ratio: float = TARGET_RATIO) -> float:
    """α such that exp(α·gap), the top-1/top-2 assignment ratio, averages ``target_ratio`` (> 1; the official 100)
    over ``gaps`` ``(N,)``.

    ``gaps`` are d²(x, 2nd nearest centre) − d²(x, nearest centre) of sampled local descriptors; the official code
    takes the geometric mean of the ratios, ``"arithmetic"`` their plain mean.

    Examples:
        >>> alpha = choose_alpha(torch.tensor([0.5, 1.0, 1.5]))
        >>> round(alpha, 4), round(math.exp(alpha * 1.0), 1)  # the mean gap is 1: ratio 100
        (4.6052, 100.0)
        >>> round(choose_alpha(torch.tensor([0.5, 1.0, 1.5]), "arithmetic"), 4)
        3.6905
        >>> round(math.exp(choose_alpha(torch.tensor([0.5, 1.0, 1.5]), target_ratio=10.0)), 1)  # ratio 10
        10.0
    """
    if not target_ratio > 1:
        raise ValueError(f"the target top-1/top-2 assignment ratio must be > 1, got {target_ratio!r}")
    gaps = gaps.to(torch.float64)
    mean_gap = float(gaps.mean())
    if mean_gap <= 0:
        raise ValueError("all descriptors are equidistant from their two nearest clusters; cannot choose α")
    geometric = math.log(target_ratio) / mean_gap
    if ratio_average == "geometric":
        return geometric
    if ratio_average != "arithmetic":
        raise ValueError(f"ratio_average must be 'geometric' (official) or 'arithmetic', got {ratio_average!r}")
    # log-mean-exp(α·gap) grows monotonically in α and is ≥ ln 100 at the geometric α (Jensen): bisect.
    low, high, log_target, log_n = 0.0, geometric, math.log(target_ratio), math.log(gaps.numel())
    for _ in range(200):
        mid = 0.5 * (low + high)
        if float(torch.logsumexp(mid * gaps, 0)) - log_n < log_target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)

