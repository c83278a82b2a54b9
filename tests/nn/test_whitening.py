"""PCA whitening: identity covariance on kept dims, Gram and covariance paths agree, crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netvlad.nn import PCAWhitening


def _correlated(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g, dtype=torch.float64) * torch.linspace(3, 0.1, d, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mixing + 5.0


@pytest.mark.parametrize(("n", "d", "out"), [(500, 40, 20), (60, 300, 32)])  # covariance and Gram (n < D) paths
def test_whitened_covariance_is_identity(n, d, out):
    x = _correlated(n, d)
    white = PCAWhitening(d, out).double().fit(x)
    y = white.linear(x).detach().numpy()  # before the final L2
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-8)
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(out), atol=1e-6)
    eig = np.sort(np.linalg.eigvalsh(np.cov(x.numpy(), rowvar=False)))[::-1][:out]
    np.testing.assert_allclose(white.eigenvalues.numpy(), eig, rtol=1e-6)
    assert torch.allclose(white(x).norm(dim=1), torch.ones(n, dtype=torch.float64))


def test_gram_and_covariance_paths_agree():
    x = _correlated(120, 100, seed=1)
    dual = PCAWhitening(100, 16).double().fit(x[:99])  # n < D → Gram path
    ref = PCAWhitening(100, 16).double().fit(torch.cat([x[:99]] * 2))  # same data twice, covariance path
    # rows equal up to sign between the two paths on the same subspace (scaled by the n−1 normalisation)
    w_dual, w_ref = dual.linear.weight.detach(), ref.linear.weight.detach()
    cos = (w_dual * w_ref).sum(1) / (w_dual.norm(dim=1) * w_ref.norm(dim=1))
    np.testing.assert_allclose(cos.abs().numpy(), 1, atol=1e-6)


def test_crop_keeps_leading_dims_and_renormalises():
    x = _correlated(300, 30)
    white = PCAWhitening(30, 12).double().fit(x)
    small = white.crop(5)
    full = white.linear(x)[:, :5]
    torch.testing.assert_close(small(x), torch.nn.functional.normalize(full, dim=1))
    with pytest.raises(ValueError, match="1..12"):
        white.crop(13)


def test_fit_needs_enough_descriptors():
    with pytest.raises(ValueError, match="at least 9"):
        PCAWhitening(20, 8).fit(torch.randn(5, 20))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_from_tensors_holds_copies_and_whitens_as_the_fitted_layer(dtype):
    torch.manual_seed(5)
    x = torch.randn(30, 12, dtype=dtype)
    fitted = PCAWhitening(12, 5, eps=1e-3).to(dtype).fit(x)
    again = PCAWhitening.from_tensors(fitted.linear.weight, fitted.linear.bias, fitted.eigenvalues, fitted.eps)
    assert (again.in_dim, again.out_dim, again.eps) == (12, 5, 1e-3)
    assert all(t.dtype == dtype and t.device.type == "cpu" for t in again.state_dict().values())
    assert torch.equal(again(x), fitted(x))
    with torch.no_grad():
        again.linear.weight.zero_()  # its own tensors: the fitted layer is untouched
    assert fitted.linear.weight.abs().sum() > 0
    cropped = fitted.crop(3)  # built by from_tensors: the first rows, re-normalised
    expected = torch.nn.functional.normalize(x @ fitted.linear.weight[:3].T + fitted.linear.bias[:3], dim=1)
    torch.testing.assert_close(cropped(x), expected, atol=1e-12 if dtype == torch.float64 else 1e-6, rtol=0)
