"""Pure tensor functions behind the layers in :mod:`netvlad.nn` (torch only).

Every layer in this package is a thin module over one of these functions, so the
same computation can be called without building a module (as in kornia).
Two input layouts are accepted everywhere: feature maps ``(B, D, H, W)`` and token
sets ``(B, N, D)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["as_tokens_dn", "l2_normalize", "netvlad", "netvlad_logits", "mac", "spoc", "gem"]


def l2_normalize(x: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """Divide ``x`` by its L2 norm along ``dim`` (zero vectors stay zero)."""
    return F.normalize(x, p=2.0, dim=dim, eps=eps)


def as_tokens_dn(x: torch.Tensor, dim: int) -> torch.Tensor:
    """View maps ``(B, D, H, W)`` or tokens ``(B, N, D)`` as ``(B, D, N)``, checking that D == ``dim``.

    Maps are reshaped without a copy; tokens are returned as a transposed view.
    """
    if x.dim() == 4:
        if x.shape[1] != dim:
            raise ValueError(f"expected a feature map with D={dim} channels as (B, D, H, W), got {tuple(x.shape)}")
        return x.flatten(2)
    if x.dim() == 3:
        if x.shape[2] != dim:
            raise ValueError(f"expected a token set with D={dim} channels as (B, N, D), got {tuple(x.shape)}")
        return x.transpose(1, 2)
    raise ValueError(f"expected (B, D, H, W) maps or (B, N, D) tokens with D={dim}, got {tuple(x.shape)}")


def netvlad_logits(x_dn: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Soft-assignment scores w_kᵀx_i + b_k: ``(B, D, N)`` -> ``(B, K, N)``."""
    logits = torch.matmul(weight, x_dn)
    if bias is not None:
        logits = logits + bias[:, None]
    return logits


def netvlad(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    centroids: torch.Tensor,
    normalize_input: bool = True,
) -> torch.Tensor:
    """NetVLAD aggregation, intra-normalised then globally L2-normalised.

    V(j, k) = Σ_i ā_k(x_i) (x_i(j) − c_k(j)) with ā = softmax_k(w_kᵀx_i + b_k), computed as
    V = A·Xᵀ − (A·1)·c (two batched matrix products; no loop over clusters and no
    B×K×D×N residual tensor).

    Shape:
        - x: ``(B, D, H, W)`` or ``(B, N, D)``; weight ``(K, D)``; bias ``(K,)`` or None; centroids ``(K, D)``
        - output: ``(B, K*D)``, cluster-major (block k holds V(:, k)), as in the official code.
    """
    num_clusters, dim = centroids.shape
    x_dn = as_tokens_dn(x, dim)
    logits = torch.matmul(weight, x_dn)  # (B, K, N)
    if normalize_input:
        # x̂_i = s_i x_i with s_i = 1/‖x_i‖: scale the K×N products instead of materialising x̂ (D×N),
        # which keeps every D×N element-wise pass (and its backward) out of the layer.
        scale = torch.linalg.vector_norm(x_dn, dim=1, keepdim=True).clamp_min(1e-12).reciprocal()  # (B, 1, N)
        logits = logits * scale
    if bias is not None:
        logits = logits + bias[:, None]
    assign = torch.softmax(logits, dim=1)  # (B, K, N)
    mass = assign.sum(dim=2, keepdim=True)  # Σ_i a_k(x_i): (B, K, 1)
    if normalize_input:
        assign = assign * scale
    vlad = torch.matmul(assign, x_dn.transpose(1, 2))  # (B, K, D) = Σ_i a_k(x_i) x̂_i
    vlad = vlad - mass * centroids  # − (Σ_i a_k(x_i)) c_k
    vlad = l2_normalize(vlad, dim=2)  # intra-normalisation, as in the MATLAB reference
    return l2_normalize(vlad.flatten(1), dim=1)


def _check_dn(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        return x.flatten(2)
    if x.dim() == 3:
        return x.transpose(1, 2)
    raise ValueError(f"expected (B, D, H, W) maps or (B, N, D) tokens, got {tuple(x.shape)}")


def mac(x: torch.Tensor) -> torch.Tensor:
    """f_max (MAC): channel-wise max over positions, L2-normalised. ``(B, D, H, W)|(B, N, D)`` -> ``(B, D)``."""
    return l2_normalize(_check_dn(x).amax(dim=2), dim=1)


def spoc(x: torch.Tensor) -> torch.Tensor:
    """f_avg (SPoC): channel-wise mean over positions, L2-normalised. ``(B, D, H, W)|(B, N, D)`` -> ``(B, D)``."""
    return l2_normalize(_check_dn(x).mean(dim=2), dim=1)


def gem(x: torch.Tensor, p: torch.Tensor | float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean (GeM): (mean_i max(x_i, eps)^p)^(1/p), L2-normalised. -> ``(B, D)``."""
    pooled = _check_dn(x).clamp(min=eps).pow(p).mean(dim=2).pow(1.0 / p)
    return l2_normalize(pooled, dim=1)
