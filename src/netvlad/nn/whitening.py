"""PCA whitening of global descriptors, fitted from data, as a layer."""

from __future__ import annotations

import torch
from torch import nn

from netvlad.nn import functional as VF


class PCAWhitening(nn.Module):
    """y = L2(diag(1/√(λ+ε)) Uᵀ (x − μ)), keeping the ``out_dim`` leading principal directions.

    Stored as a linear layer (weight = diag(1/√(λ+ε)) Uᵀ, bias = −weight·μ) so that it trains and
    exports like any other layer. Rows are sorted by decreasing variance, so :meth:`crop` to a
    smaller size keeps the first dims and re-normalises.

    Shape:
        - input: ``(B, in_dim)``; output: ``(B, out_dim)``, unit L2 norm.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> descriptors = torch.nn.functional.normalize(torch.randn(100, 32), dim=1)
        >>> whitening = PCAWhitening(32, 16).fit(descriptors)
        >>> whitening(descriptors).shape, whitening.crop(8)(descriptors).shape
        (torch.Size([100, 16]), torch.Size([100, 8]))
        >>> bool((whitening.eigenvalues[:-1] >= whitening.eigenvalues[1:]).all())  # by decreasing variance
        True
    """

    def __init__(self, in_dim: int, out_dim: int, eps: float = 1e-9, device: torch.device | str | None = None
                 ) -> None:
        super().__init__()
        if out_dim > in_dim:
            raise ValueError(f"whitening cannot raise the dimension: in_dim={in_dim}, out_dim={out_dim}")
        self.in_dim, self.out_dim, self.eps = in_dim, out_dim, eps
        self.linear = nn.Linear(in_dim, out_dim, bias=True, device=device)
        self.register_buffer("eigenvalues", torch.ones(out_dim, device=device))

    @classmethod
    @torch.no_grad()
    def from_tensors(cls, weight: torch.Tensor, bias: torch.Tensor, eigenvalues: torch.Tensor, eps: float = 1e-9
                     ) -> PCAWhitening:
        """A whitening holding copies of ``weight`` ``(out, in)``, ``bias`` ``(out,)`` and ``eigenvalues``
        ``(out,)``, in ``weight``'s dtype and device, without drawing a random initialisation first (for a patch
        whitening of 81,920-D vectors that draw costs more than reading the weights).

        Examples:
            >>> fitted = PCAWhitening(8, 4).fit(torch.randn(20, 8))
            >>> again = PCAWhitening.from_tensors(fitted.linear.weight, fitted.linear.bias, fitted.eigenvalues)
            >>> torch.equal(again.linear.weight, fitted.linear.weight), again.out_dim
            (True, 4)
        """
        out_dim, in_dim = weight.shape
        whitening = cls(in_dim, out_dim, eps, device="meta")  # shapes only: every tensor is replaced below
        whitening.linear.weight = nn.Parameter(weight.detach().clone())
        whitening.linear.bias = nn.Parameter(bias.detach().to(weight).clone())
        whitening.eigenvalues = eigenvalues.detach().to(weight).clone()
        return whitening

    @property
    def output_dim(self) -> int:
        return self.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected descriptors as (B, {self.in_dim}), got {tuple(x.shape)}")
        return VF.l2_normalize(self.linear(x), dim=1)

    @torch.no_grad()
    def fit(self, descriptors: torch.Tensor, chunk: int = 4096) -> PCAWhitening:
        """Fit μ, U and λ from descriptors ``(n, in_dim)`` (covariance normalised by n − 1).

        When n < in_dim the n×n Gram matrix is decomposed instead of the in_dim² covariance (U = Xcᵀ V Λ^-½), so
        5,000 × 81,920 patch vectors fit in memory. Products run in the descriptors' precision (float32 stays
        float32: the leading 512 unit directions of real patch vectors differ from a float64 fit by ≤ 1e-6) and
        are summed over column chunks in float64; the eigendecomposition is float64.
        """
        x = descriptors.detach()
        n, d = x.shape
        if d != self.in_dim:
            raise ValueError(f"expected descriptors as (n, {self.in_dim}), got {tuple(x.shape)}")
        keep = min(self.out_dim, n - 1)
        if keep < self.out_dim:
            raise ValueError(f"whitening to {self.out_dim} dims needs at least {self.out_dim + 1} descriptors, got {n}")
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        mu = torch.cat([x[:, j:j + chunk].to(torch.float64).sum(0) for j in range(0, d, chunk)]) / n

        def centred(j: int, dtype: torch.dtype = work) -> torch.Tensor:
            return x[:, j:j + chunk].to(dtype) - mu[j:j + chunk].to(dtype)

        if n < d:  # dual: eig of Gram = Xc Xcᵀ, U = Xcᵀ V Λ^-½
            gram = torch.zeros(n, n, dtype=torch.float64)
            for j in range(0, d, chunk):
                gram_add(gram, centred(j))
            lam, vec = torch.linalg.eigh(gram)
            lam, vec = lam.flip(0)[:keep], vec.flip(1)[:, :keep]
            v = vec.to(work)
            u = torch.cat([(centred(j).T @ v).to(torch.float64) for j in range(0, d, chunk)])
            u /= lam.clamp_min(1e-300).sqrt()
        else:
            xc = torch.cat([centred(j, torch.float64) for j in range(0, d, chunk)], 1)
            lam, vec = torch.linalg.eigh(xc.T @ xc)
            lam, u = lam.flip(0)[:keep], vec.flip(1)[:, :keep]
        lam = (lam / (n - 1)).clamp_min(0)
        weight = u.T / (lam + self.eps).sqrt()[:, None]
        self.linear.weight.copy_(weight)
        self.linear.bias.copy_(-(weight @ mu))
        self.eigenvalues.copy_(lam)
        return self

    @torch.no_grad()
    def crop(self, out_dim: int) -> PCAWhitening:
        """A new whitening keeping the first ``out_dim`` principal directions (output re-normalised)."""
        if not 0 < out_dim <= self.out_dim:
            raise ValueError(f"crop size must be in 1..{self.out_dim}, got {out_dim}")
        return PCAWhitening.from_tensors(self.linear.weight[:out_dim], self.linear.bias[:out_dim],
                                         self.eigenvalues[:out_dim], self.eps)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, eps={self.eps}"


GRAM_BLOCK = 1024  # rows per block of the Gram matrix: only blocks on and above the diagonal are multiplied


def gram_add(gram: torch.Tensor, block: torch.Tensor) -> None:
    """``gram += block·blockᵀ`` (float64 ``(n, n)``), ``block`` ``(n, c)``: the upper block triangle multiplied in
    ``block``'s precision, mirrored below (≈ 0.6× the products of a full ``block @ block.T`` at n = 5,000)."""
    n = len(block)
    for i in range(0, n, GRAM_BLOCK):
        rows = block[i:i + GRAM_BLOCK]
        for j in range(i, n, GRAM_BLOCK):
            part = (rows @ block[j:j + GRAM_BLOCK].T).to(torch.float64)
            gram[i:i + GRAM_BLOCK, j:j + GRAM_BLOCK] += part
            if j > i:
                gram[j:j + GRAM_BLOCK, i:i + GRAM_BLOCK] += part.T
