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
    """f_max (MAC): ``(B, D, H, W)|(B, N, D)`` -> ``(B, D)``, L2-normalised."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return VF.mac(self._check(x))


class AvgPool(_Pool):
    """f_avg (SPoC): ``(B, D, H, W)|(B, N, D)`` -> ``(B, D)``, L2-normalised."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return VF.spoc(self._check(x))


class GeM(_Pool):
    """Generalised-mean pooling with a learnable exponent p: ``(B, D, H, W)|(B, N, D)`` -> ``(B, D)``."""

    def __init__(self, dim: int, p: float = 3.0, eps: float = 1e-6, learn_p: bool = True) -> None:
        super().__init__(dim)
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn_p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return VF.gem(self._check(x), self.p, self.eps)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, p={float(self.p):.3f}, eps={self.eps}"
