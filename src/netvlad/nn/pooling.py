"""Global pooling baselines: f_max (MAC), f_avg (SPoC) and GeM, all L2-normalised."""

from __future__ import annotations

import torch
from torch import nn

from netvlad.nn import functional as VF


class _Pool(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    @property
    def output_dim(self) -> int:
        """Length of the output descriptor, D."""
        return self.dim

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        VF.as_tokens_dn(x, self.dim)  # raises with the expected D
        return x


class MaxPool(_Pool):
    """f_max (MAC): ``(B, D, H, W)|(B, N, D)`` -> ``(B, D)``, L2-normalised.

    Shape:
        - input: ``(B, D, H, W)`` feature maps or ``(B, N, D)`` tokens
        - output: ``(B, D)``, unit L2 norm

    Examples:
        >>> x = torch.zeros(1, 2, 2, 2)
        >>> x[0, 0, 1, 1], x[0, 1, 0, 0] = 3.0, 4.0  # the largest value of each channel
        >>> MaxPool(dim=2)(x)
        tensor([[0.6000, 0.8000]])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return VF.mac(self._check(x))


class AvgPool(_Pool):
    """f_avg (SPoC): ``(B, D, H, W)|(B, N, D)`` -> ``(B, D)``, L2-normalised.

    Shape:
        - input: ``(B, D, H, W)`` feature maps or ``(B, N, D)`` tokens
        - output: ``(B, D)``, unit L2 norm

    Examples:
        >>> tokens = torch.tensor([[[1.0, 0.0], [5.0, 8.0]]])  # (B=1, N=2, D=2): means 3 and 4
        >>> AvgPool(dim=2)(tokens)
        tensor([[0.6000, 0.8000]])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return VF.spoc(self._check(x))


class GeM(_Pool):
    """Generalised-mean pooling with a learnable exponent p: ``(B, D, H, W)|(B, N, D)`` -> ``(B, D)``.

    p = 1 is average pooling and p → ∞ max pooling (Radenović et al., TPAMI 2018).

    Shape:
        - input: ``(B, D, H, W)`` feature maps or ``(B, N, D)`` tokens
        - output: ``(B, D)``, unit L2 norm

    Examples:
        >>> pool = GeM(dim=512)
        >>> pool(torch.rand(2, 512, 7, 7)).shape
        torch.Size([2, 512])
        >>> pool
        GeM(dim=512, p=3.000, eps=1e-06)
        >>> x = torch.rand(1, 4, 3, 3)
        >>> torch.allclose(GeM(4, p=1.0)(x), AvgPool(4)(x))
        True
    """

    def __init__(self, dim: int, p: float = 3.0, eps: float = 1e-6, learn_p: bool = True) -> None:
        super().__init__(dim)
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn_p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return VF.gem(self._check(x), self.p, self.eps)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, p={float(self.p.detach()):.3f}, eps={self.eps}"
