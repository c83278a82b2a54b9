"""Pure tensor functions behind the layers in :mod:`netvlad.nn` (torch only).

Every layer in this package is a thin module over one of these functions, so the
same computation can be called without building a module (as in kornia).
Two input layouts are accepted everywhere: feature maps ``(B, D, H, W)`` and token
sets ``(B, N, D)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["all_finite", "as_tokens_dn", "l2_normalize", "netvlad", "mac", "spoc", "gem"]


def all_finite(x: torch.Tensor) -> bool:
    """Whether every value of ``x`` is finite (no NaN, no ±inf; a tensor of integers or no values: True), from its
    minimum and maximum, which a NaN or an infinity reaches: one pass over ``x``, where ``torch.isfinite(x).all()``
    writes tensors as large as ``x`` (0.4 s for a patch whitening's 168 MB on one thread, 0.015 s this way).

    Examples:
        >>> weight = torch.randn(4, 6)
        >>> all_finite(weight), all_finite(torch.arange(3)), all_finite(torch.empty(0))
        (True, True, True)
        >>> weight[2, 3] = float("nan")
        >>> all_finite(weight), all_finite(torch.tensor([1.0, float("-inf")], dtype=torch.bfloat16))
        (False, False)
    """
    if not x.is_floating_point() or not x.numel():
        return True
    low, high = torch.aminmax(x.detach())
    return bool(torch.isfinite(low) & torch.isfinite(high))


def l2_normalize(x: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """Divide ``x`` by its L2 norm along ``dim`` (zero vectors stay zero).

    Examples:
        >>> l2_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
        tensor([[0.6000, 0.8000],
                [0.0000, 0.0000]])
    """
    return F.normalize(x, p=2.0, dim=dim, eps=eps)


def as_tokens_dn(x: torch.Tensor, dim: int) -> torch.Tensor:
    """View maps ``(B, D, H, W)`` or tokens ``(B, N, D)`` as ``(B, D, N)``, checking that D == ``dim``.

    Maps are reshaped without a copy; tokens are returned as a transposed view.

    Shape:
        - x: ``(B, D, H, W)`` or ``(B, N, D)``
        - output: ``(B, D, H*W)`` or ``(B, D, N)``

    Examples:
        >>> as_tokens_dn(torch.zeros(2, 8, 3, 5), dim=8).shape
        torch.Size([2, 8, 15])
        >>> as_tokens_dn(torch.zeros(2, 15, 8), dim=8).shape
        torch.Size([2, 8, 15])
        >>> as_tokens_dn(torch.zeros(2, 15, 8), dim=4)
        Traceback (most recent call last):
        ...
        ValueError: expected a token set with D=4 channels as (B, N, D), got (2, 15, 8)
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

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> x, centroids = torch.randn(2, 16, 4, 4), torch.randn(8, 16)
        >>> v = netvlad(x, weight=torch.randn(8, 16), bias=torch.zeros(8), centroids=centroids)
        >>> v.shape
        torch.Size([2, 128])
        >>> torch.allclose(v.norm(dim=1), torch.ones(2))  # globally L2-normalised
        True
        >>> torch.allclose(v.view(2, 8, 16).norm(dim=2), torch.full((2, 8), 8 ** -0.5))  # each cluster block: 1/√K
        True
    """
    if torch.is_autocast_enabled(x.device.type):
        # float32 aggregation under autocast: bf16 sums over thousands of positions lose the residuals, and the
        # hand-written backward needs one dtype (autocast would hand it bf16 inputs and a float32 gradient)
        with torch.autocast(x.device.type, enabled=False):
            return netvlad(x.float(), weight.float(), None if bias is None else bias.float(), centroids.float(),
                           normalize_input)
    num_clusters, dim = centroids.shape
    x_dn = as_tokens_dn(x, dim)
    tensors = (x_dn, weight, centroids) + ((bias,) if bias is not None else ())
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors) and not torch.jit.is_tracing():
        vlad = _Aggregate.apply(x_dn, weight, bias, centroids, normalize_input)
    else:
        vlad = _aggregate(x_dn, weight, bias, centroids, normalize_input)[0]
    vlad = l2_normalize(vlad, dim=2)  # intra-normalisation, as in the MATLAB reference
    return l2_normalize(vlad.flatten(1), dim=1)


def _aggregate(x_dn, weight, bias, centroids, normalize_input):
    """V = A·X̂ᵀ − (A·1)·c for ``(B, D, N)`` input -> ``(B, K, D)``, and what the backward pass needs.

    x̂_i = s_i x_i with s_i = 1/‖x_i‖: the K×N products are scaled instead of materialising x̂ (D×N).
    """
    raw = torch.bmm(weight.expand(len(x_dn), -1, -1), x_dn)  # (B, K, N); matmul would copy x to fold the batch
    scale = None
    if normalize_input:
        scale = torch.linalg.vector_norm(x_dn, dim=1, keepdim=True).clamp_min(1e-12).reciprocal()  # (B, 1, N)
    logits = raw * scale if scale is not None else raw
    if bias is not None:
        logits = logits + bias[:, None]
    assign = torch.softmax(logits, dim=1)  # (B, K, N)
    mass = assign.sum(dim=2, keepdim=True)  # Σ_i a_k(x_i): (B, K, 1)
    scaled = assign * scale if scale is not None else assign
    vlad = torch.matmul(scaled, x_dn.transpose(1, 2)) - mass * centroids  # (B, K, D)
    return vlad, raw, scale, assign, scaled, mass


class _Aggregate(torch.autograd.Function):
    """:func:`_aggregate` with a hand-written backward: the three D×N gradient terms of x are produced by one
    element-wise pass and one batched product over the stacked [Wᵀ | ∂Vᵀ] (D×2K) and [∂raw; A·s] (2K×N),
    instead of autograd's separate products and accumulations."""

    @staticmethod
    def forward(ctx, x_dn, weight, bias, centroids, normalize_input):
        vlad, raw, scale, assign, scaled, mass = _aggregate(x_dn, weight, bias, centroids, normalize_input)
        ctx.save_for_backward(x_dn, weight, centroids, raw, scale, assign, scaled, mass)
        ctx.has_bias = bias is not None
        return vlad

    @staticmethod
    def backward(ctx, grad_vlad):
        x_dn, weight, centroids, raw, scale, assign, scaled, mass = ctx.saved_tensors
        grad_centroids = -(mass * grad_vlad).sum(0)  # (K, D)
        grad_mass = -(grad_vlad * centroids).sum(2, keepdim=True)  # (B, K, 1)
        grad_scaled = torch.matmul(grad_vlad, x_dn)  # (B, K, N)
        grad_assign = (grad_scaled * scale if scale is not None else grad_scaled) + grad_mass
        grad_logits = assign * (grad_assign - (grad_assign * assign).sum(1, keepdim=True))  # softmax backward
        grad_bias = grad_logits.sum((0, 2)) if ctx.has_bias else None
        grad_raw = grad_logits * scale if scale is not None else grad_logits
        grad_weight = torch.matmul(grad_raw, x_dn.transpose(1, 2)).sum(0)  # (K, D)
        grad_x = None
        if ctx.needs_input_grad[0]:
            left = torch.cat([weight.T.expand(len(x_dn), -1, -1), grad_vlad.transpose(1, 2)], dim=2)  # (B, D, 2K)
            right = torch.cat([grad_raw, scaled], dim=1)  # (B, 2K, N)
            if scale is None:
                grad_x = torch.bmm(left, right)
            else:
                # s = 1/‖x‖ → ∂s/∂x = −s³·x (zero where the norm was clamped)
                grad_scale = (grad_logits * raw).sum(1, keepdim=True) + (grad_scaled * assign).sum(1, keepdim=True)
                coeff = -grad_scale * scale.pow(3) * (scale < 1e12)
                grad_x = (x_dn * coeff).baddbmm_(left, right)
        return grad_x, grad_weight, grad_bias, grad_centroids, None


def _check_dn(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        return x.flatten(2)
    if x.dim() == 3:
        return x.transpose(1, 2)
    raise ValueError(f"expected (B, D, H, W) maps or (B, N, D) tokens, got {tuple(x.shape)}")


def mac(x: torch.Tensor) -> torch.Tensor:
    """f_max (MAC): channel-wise max over positions, L2-normalised. ``(B, D, H, W)|(B, N, D)`` -> ``(B, D)``.

    Examples:
        >>> mac(torch.tensor([[[3.0, 0.0], [1.0, 4.0]]]))  # tokens (B=1, N=2, D=2): maxima 3 and 4
        tensor([[0.6000, 0.8000]])
    """
    return l2_normalize(_check_dn(x).amax(dim=2), dim=1)


def spoc(x: torch.Tensor) -> torch.Tensor:
    """f_avg (SPoC): channel-wise mean over positions, L2-normalised. ``(B, D, H, W)|(B, N, D)`` -> ``(B, D)``.

    Examples:
        >>> spoc(torch.tensor([[[1.0, 0.0], [5.0, 8.0]]]))  # tokens (B=1, N=2, D=2): means 3 and 4
        tensor([[0.6000, 0.8000]])
    """
    return l2_normalize(_check_dn(x).mean(dim=2), dim=1)


def gem(x: torch.Tensor, p: torch.Tensor | float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean (GeM): (mean_i max(x_i, eps)^p)^(1/p), L2-normalised. -> ``(B, D)``.

    Shape:
        - x: ``(B, D, H, W)`` or ``(B, N, D)``
        - output: ``(B, D)``, unit L2 norm

    Examples:
        >>> x = torch.rand(2, 8, 5, 5)
        >>> torch.allclose(gem(x, p=1.0), spoc(x)), torch.allclose(gem(x, p=200.0), mac(x), atol=0.05)
        (True, True)
    """
    pooled = _check_dn(x).clamp(min=eps).pow(p).mean(dim=2).pow(1.0 / p)
    return l2_normalize(pooled, dim=1)
