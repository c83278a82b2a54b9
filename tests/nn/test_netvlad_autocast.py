"""NetVLAD under bf16 autocast (the GPU extraction and training setting): float32 aggregation, working backward."""

import torch

from netvlad.nn.functional import netvlad


def test_autocast_forward_and_backward_match_float32():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 6).bfloat16().float().requires_grad_()  # values a bf16 backbone would produce
    weight, centroids = torch.randn(4, 16, requires_grad=True), torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = netvlad(x.bfloat16(), weight, None, centroids)  # conv5 output under autocast is bf16
    assert mixed.dtype == torch.float32
    mixed.square().sum().backward()  # failed before: bf16 saved tensors against a float32 gradient
    grad_w = weight.grad.clone()
    weight.grad = None
    reference = netvlad(x, weight, None, centroids)
    reference.square().sum().backward()
    torch.testing.assert_close(mixed, reference)
    torch.testing.assert_close(grad_w, weight.grad)
    assert x.grad is not None and torch.isfinite(x.grad).all()
