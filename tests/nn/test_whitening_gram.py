"""The Gram fit of the PCA whitening (float32 products, float64 eigendecomposition) against numpy's float64 SVD of
real Patch-NetVLAD vectors of Gardens Point, and the blocked Gram product against a full one."""

from __future__ import annotations

import numpy as np
import torch

from netvlad.nn import PCAWhitening
from netvlad.nn.patch import patch_netvlad
from netvlad.nn.whitening import GRAM_BLOCK, gram_add


def _patch_vectors(maps, layer) -> torch.Tensor:
    """Every 1×1 and 2×2 window's K·D-D patch vector of the four real maps: ``(236, 10240)`` float32."""
    args = layer.conv.weight.view(layer.num_clusters, layer.dim), layer.conv.bias, layer.centroids
    with torch.no_grad():
        return torch.cat([patch_netvlad(maps, *args, size=s).flatten(0, 1) for s in (1, 2)]).float()


def test_gram_fit_equals_numpy_svd_on_real_patch_vectors(gardens_point_maps):
    x = _patch_vectors(*gardens_point_maps)
    n, keep = len(x), 48
    assert n < x.shape[1]  # the Gram route
    centred = x.double().numpy() - x.double().numpy().mean(0)
    _, sigma, vt = np.linalg.svd(centred, full_matrices=False)
    lam = sigma[:keep] ** 2 / (n - 1)
    assert np.min(-np.diff(lam) / lam[:-1]) > 1e-3  # distinct eigenvalues: each direction is defined up to sign
    for dtype in (torch.float32, torch.float64):
        fitted = PCAWhitening(x.shape[1], keep).to(dtype).fit(x.to(dtype)).requires_grad_(False)
        scale = (fitted.eigenvalues.double() + fitted.eps).sqrt()[:, None]
        directions = (fitted.linear.weight.double() * scale).numpy()
        signs = np.sign(np.sum(directions * vt[:keep], 1))
        np.testing.assert_allclose(directions * signs[:, None], vt[:keep], atol=1e-5, rtol=0)
        np.testing.assert_allclose(fitted.eigenvalues.double().numpy(), lam, rtol=1e-5)
        mu = x.double().mean(0)
        torch.testing.assert_close(fitted.linear.bias.double(), -(fitted.linear.weight.double() @ mu), atol=1e-5,
                                   rtol=0)


def test_blocked_gram_is_the_full_product():
    torch.manual_seed(0)
    block = torch.randn(2 * GRAM_BLOCK + 37, 9, dtype=torch.float64)  # three row blocks, the last one short
    gram = torch.ones(len(block), len(block), dtype=torch.float64)
    gram_add(gram, block)
    torch.testing.assert_close(gram, 1 + block @ block.T, atol=1e-12, rtol=0)
