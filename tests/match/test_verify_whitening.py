"""The fitted patch whitening's regularisation (ε = shrink × mean eigenvalue) against an independent numpy PCA."""

from __future__ import annotations

import numpy as np
import torch

from netvlad.match.verify.patches import SHRINK, fit_patch_whitening, shrink_whitening
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.nn import PCAWhitening
from tests.extract.conftest import write_images


def numpy_shrunk(train: np.ndarray, test: np.ndarray, dim: int, shrink: float) -> np.ndarray:
    """L2(diag(1/√(λ + shrink·mean λ)) Uᵀ (x − μ)) with U, λ from numpy's eigh of the covariance (n − 1)."""
    mu = train.mean(0)
    lam, vec = np.linalg.eigh(np.cov(train - mu, rowvar=False))
    lam, vec = lam[::-1][:dim], vec[:, ::-1][:, :dim]
    y = (test - mu) @ vec / np.sqrt(lam + shrink * lam.mean())
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def test_shrunk_whitening_matches_numpy_up_to_eigenvector_signs():
    rng = np.random.default_rng(0)
    train = rng.standard_normal((400, 24)) * np.geomspace(5, 0.05, 24)  # a spread spectrum, like patch vectors
    test = rng.standard_normal((30, 24)) * np.geomspace(5, 0.05, 24)
    fitted = PCAWhitening(24, 10).double().fit(torch.from_numpy(train))
    for shrink in (0.0, 1.0, SHRINK):
        with torch.no_grad():
            ours = shrink_whitening(fitted, shrink)(torch.from_numpy(test)).numpy()
        expected = numpy_shrunk(train, test, 10, shrink)
        np.testing.assert_allclose(np.abs(ours), np.abs(expected), atol=1e-9)  # eigenvectors' signs are arbitrary
        np.testing.assert_allclose(ours @ ours.T, expected @ expected.T, atol=1e-9)
    torch.testing.assert_close(shrink_whitening(fitted, 2.0).eigenvalues, fitted.eigenvalues)  # λ kept as fitted


def test_more_shrinkage_tends_to_plain_pca():
    rng = np.random.default_rng(1)
    train = rng.standard_normal((300, 16)) * np.geomspace(3, 0.1, 16)
    fitted = PCAWhitening(16, 6).double().fit(torch.from_numpy(train))
    x = torch.from_numpy(train[:20])
    directions = np.linalg.eigh(np.cov(train, rowvar=False))[1][:, ::-1][:, :6]
    pca = (x - x.new_tensor(train.mean(0))) @ torch.from_numpy(directions.copy())
    pca = pca / pca.norm(dim=1, keepdim=True)
    with torch.no_grad():
        gaps = [float((shrink_whitening(fitted, s)(x).abs() - pca.abs()).abs().max()) for s in (0.0, 1.0, 10.0, 1e6)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-5 < gaps[0]


def test_fit_patch_whitening_is_the_plain_fit_shrunk(tmp_path):
    config = ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=4,
                         preprocessing=Preprocessing("fixed", (128, 160)))
    model = PlaceModel(config, pretrained=False).eval()
    paths = [tmp_path / n for n in write_images(tmp_path, 4, size=(160, 128))]
    plain = fit_patch_whitening(model, paths, 8, size=2, samples=40, shrink=0.0)
    default = fit_patch_whitening(model, paths, 8, size=2, samples=40)
    torch.testing.assert_close(default.linear.weight, shrink_whitening(plain, SHRINK).linear.weight)
    torch.testing.assert_close(default.linear.bias, shrink_whitening(plain, SHRINK).linear.bias)
