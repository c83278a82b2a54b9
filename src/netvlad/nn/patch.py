"""Patch-NetVLAD descriptors (Hausler et al., CVPR 2021): the NetVLAD vector of every P×P window of a feature map.

Each window's residual sum V(k) = Σ_i a_k(x_i)·(x_i − c_k) over its cells is a box sum of the per-cell weighted
residuals, taken for every window at once by separable strided sums in the maps' precision (no window is run through
the layer alone, and no large sums are subtracted, as integral images would). Clusters are processed in chunks, and a
projection (PCA whitening) is applied chunk by chunk (``W·(v/‖v‖) = (Σ_chunks W_chunk·v_chunk)/‖v‖``), so the
K·D-dimensional patch vectors never exist all at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from netvlad.nn import functional as VF

__all__ = ["window_grid", "integral_image", "window_sums", "box_sums", "patch_vlad_chunks", "patch_netvlad"]


def window_grid(height: int, width: int, size: int, stride: int) -> tuple[int, int]:
    """Rows and columns of P×P windows at stride s on an H×W map (0, 0 when the map is smaller than P)."""
    if size < 1 or stride < 1:
        raise ValueError(f"patch size and stride must be ≥ 1, got size={size}, stride={stride}")
    if height < size or width < size:
        return 0, 0
    return (height - size) // stride + 1, (width - size) // stride + 1


def integral_image(x: torch.Tensor) -> torch.Tensor:
    """Summed-area table of ``(..., H, W)`` -> ``(..., H+1, W+1)`` in float64, with a zero first row and column."""
    table = x.new_zeros(*x.shape[:-2], x.shape[-2] + 1, x.shape[-1] + 1, dtype=torch.float64)
    table[..., 1:, 1:] = x
    torch.cumsum(table, -1, out=table)  # in place: one table in memory, not three
    return torch.cumsum(table, -2, out=table)


def window_sums(table: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """Sums over every P×P window (stride s) from an integral image ``(..., H+1, W+1)`` -> ``(..., rows, cols)``."""
    p, s = size, stride  # window (i, j) covers rows i..i+P−1: T[i+P, j+P] − T[i, j+P] − T[i+P, j] + T[i, j]
    return table[..., p::s, p::s] - table[..., :-p:s, p::s] - table[..., p::s, :-p:s] + table[..., :-p:s, :-p:s]


def box_sums(x: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """Sums over every P×P window (stride s) of ``(B, C, H, W)`` -> ``(B, C, rows, cols)``, in ``x``'s precision:
    P-long sums along the rows, then along the columns."""
    return x.unfold(2, size, stride).sum(-1).unfold(3, size, stride).sum(-1)


def _assignments(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, normalize_input: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(local descriptors as the layer sees them ``(B, D, H, W)``, soft assignments ``(B, K, H, W)``)."""
    if normalize_input:
        x = VF.l2_normalize(x, dim=1)
    logits = torch.einsum("kd,bdhw->bkhw", weight, x)
    if bias is not None:
        logits = logits + bias[:, None, None]
    return x, torch.softmax(logits, dim=1)


def patch_vlad_chunks(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, centroids: torch.Tensor,
                      size: int, stride: int = 1, normalize_input: bool = True, cluster_chunk: int = 2
                      ) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield (cluster slice, intra-normalised window residuals ``(B, rows·cols, k, D)``) chunk by chunk of clusters.

    ``x`` ``(B, D, H, W)`` feature maps; windows are row-major over the :func:`window_grid`. Peak memory per chunk:
    the weighted residuals ``B·k·D·H·W`` plus the windows' ``B·rows·cols·k·D``, in ``x``'s precision.
    """
    if x.dim() != 4 or x.shape[1] != centroids.shape[1]:
        raise ValueError(f"expected feature maps as (B, {centroids.shape[1]}, H, W), got {tuple(x.shape)}")
    rows, cols = window_grid(x.shape[2], x.shape[3], size, stride)
    if not rows:
        return
    feats, assign = _assignments(x, weight, bias, normalize_input)
    centroids = centroids.to(feats.dtype)
    for k0 in range(0, len(centroids), cluster_chunk):
        part = slice(k0, min(k0 + cluster_chunk, len(centroids)))
        residuals = assign[:, part, None] * (feats[:, None] - centroids[part, :, None, None])  # (B, k, D, H, W)
        vlad = box_sums(residuals.flatten(1, 2), size, stride)  # (B, k·D, rows, cols)
        vlad = vlad.unflatten(1, residuals.shape[1:3]).flatten(3).permute(0, 3, 1, 2)  # (B, rows·cols, k, D)
        yield part, VF.l2_normalize(vlad, dim=3)  # intra-normalisation, as in the layer


def patch_netvlad(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, centroids: torch.Tensor,
                  size: int, stride: int = 1, normalize_input: bool = True,
                  projection: tuple[torch.Tensor, torch.Tensor] | None = None, cluster_chunk: int = 2
                  ) -> torch.Tensor:
    """Patch NetVLAD descriptors of every P×P window: ``(B, D, H, W)`` -> ``(B, rows·cols, out)`` row-major.

    Without ``projection``: intra-normalised then L2-normalised, out = K·D, cluster-major (equal to
    :func:`netvlad.nn.functional.netvlad` on each cropped window). With ``projection`` = (weight ``(out, K·D)``,
    bias ``(out,)``) of a PCA whitening: that whitening applied to the L2-normalised vector, then L2-normalised.
    """
    num_clusters, dim = centroids.shape
    rows, cols = window_grid(x.shape[2], x.shape[3], size, stride)
    out_dim = num_clusters * dim if projection is None else projection[0].shape[0]
    out = x.new_zeros(len(x), rows * cols, out_dim)
    squared = x.new_zeros(len(x), rows * cols, 1)
    for part, vlad in patch_vlad_chunks(x, weight, bias, centroids, size, stride, normalize_input, cluster_chunk):
        squared += vlad.square().sum((2, 3))[..., None]
        flat = vlad.flatten(2)
        if projection is None:
            out[..., part.start * dim:part.stop * dim] = flat
        else:  # one (B·windows, k·D) @ (k·D, out) product: a batched one would repeat the weight per image
            out += (flat.flatten(0, 1) @ projection[0][:, part.start * dim:part.stop * dim].T).view_as(out)
    out /= squared.sqrt().clamp_min(1e-12)  # the global L2 norm of the intra-normalised vector
    if projection is not None:
        out = VF.l2_normalize(out + projection[1], dim=2)
    return out
