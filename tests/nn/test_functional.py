"""Pure tensor functions of netvlad.nn.functional not covered by their layers' tests."""

from __future__ import annotations

import pytest
import torch

from netvlad.nn.functional import all_finite


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_one_bad_value_anywhere_is_found_as_isfinite_finds_it(dtype, bad):
    values = torch.randn(3 * 4099, generator=torch.Generator().manual_seed(0)).to(dtype)
    assert all_finite(values) and all_finite(values.view(3, -1).T)  # a strided view too
    for where in (0, 1, 4098, 4099, 8191, len(values) - 1):  # ends and around the reduction's blocks
        broken = values.clone()
        broken[where] = bad
        assert all_finite(broken) is False is bool(torch.isfinite(broken).all())
    assert all_finite(torch.tensor([torch.finfo(dtype).max, torch.finfo(dtype).min], dtype=dtype))  # finite extremes


def test_integers_and_empty_tensors_are_finite():
    assert all_finite(torch.arange(5)) and all_finite(torch.zeros(0)) and all_finite(torch.tensor([True, False]))
