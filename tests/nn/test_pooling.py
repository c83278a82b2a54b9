"""Pooling baselines against direct numpy formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netvlad.nn import AvgPool, GeM, MaxPool


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("layout", ["map", "tokens"])
def test_pools_equal_numpy_formulas(layout):
    maps = torch.rand(2, 6, 3, 4, dtype=torch.float64) + 0.01
    x = maps if layout == "map" else maps.flatten(2).transpose(1, 2)
    flat = maps.flatten(2).numpy()  # (B, D, N)
    np.testing.assert_allclose(MaxPool(6)(x).numpy(), _unit(flat.max(2)), atol=1e-12)
    np.testing.assert_allclose(AvgPool(6)(x).numpy(), _unit(flat.mean(2)), atol=1e-12)
    gem = GeM(6, p=3.0).double()
    np.testing.assert_allclose(gem(x).detach().numpy(), _unit((flat**3).mean(2) ** (1 / 3)), atol=1e-12)


def test_gem_limits_and_learnable_p():
    x = torch.rand(3, 5, 4, 4, dtype=torch.float64) + 0.1
    torch.testing.assert_close(GeM(5, p=1.0).double()(x), AvgPool(5)(x))
    torch.testing.assert_close(GeM(5, p=200.0).double()(x), MaxPool(5)(x), atol=2e-2, rtol=0)
    gem = GeM(5).double()
    gem(x)[:, 0].sum().backward()
    assert gem.p.grad is not None and gem.p.grad.abs() > 0


def test_pools_reject_wrong_dim():
    for pool in (MaxPool(8), AvgPool(8), GeM(8)):
        with pytest.raises(ValueError, match="D=8"):
            pool(torch.rand(1, 7, 2, 2))
