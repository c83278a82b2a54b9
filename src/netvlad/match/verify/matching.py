"""Patch matching between a query and its candidates, batched over candidates: mutual nearest neighbours, RANSAC
homography inliers and Patch-NetVLAD's rapid spatial score. Torch only; no Python loop over patches or pairs."""

from __future__ import annotations

import torch

RANSAC_CHUNK = 8  # candidates whose (hypotheses × matches) reprojections are held at once


def patch_positions(rows: int, cols: int) -> torch.Tensor:
    """Grid (column, row) indices of the windows of a ``rows × cols`` window grid, row-major: ``(rows·cols, 2)``."""
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.stack([c.reshape(-1), r.reshape(-1)], 1).to(torch.float64)


def window_centres(rows: int, cols: int, size: int, stride: int) -> torch.Tensor:
    """Centres (x, y) of the windows in feature-map cells, row-major: ``(rows·cols, 2)``."""
    return patch_positions(rows, cols) * stride + (size - 1) / 2


def mutual_nearest(query: torch.Tensor, candidates: torch.Tensor, valid: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual nearest neighbours (by dot product of unit vectors) of query patches in each candidate.

    ``query`` ``(n, d)``, ``candidates`` ``(C, m, d)``, ``valid`` ``(C, m)`` mask of real (not padding) patches.
    Returns (partner ``(C, n)`` candidate patch of each query patch, mutual ``(C, n)`` bool).

    Shape:
        - query: ``(n, d)``; candidates: ``(C, m, d)``; valid: ``(C, m)``
        - output: partner and mutual ``(C, n)``

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> query = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
        >>> candidates = torch.stack([query, query[torch.tensor([5, 0, 3, 2, 1, 4])]])  # the same patches, shuffled
        >>> partner, mutual = mutual_nearest(query, candidates)
        >>> partner, bool(mutual.all())
        (tensor([[0, 1, 2, 3, 4, 5],
                [1, 4, 3, 2, 5, 0]]), True)
    """
    if not query.shape[0] or not candidates.shape[1]:  # no patches on one side: nothing can match
        partner = torch.zeros(candidates.shape[0], query.shape[0], dtype=torch.long, device=query.device)
        return partner, torch.zeros_like(partner, dtype=torch.bool)
    sims = torch.matmul(candidates, query.T)  # (C, m, n)
    if valid is not None and bool(valid.all()):  # every candidate's rows are patches: nothing to mask
        valid = None
    if valid is not None:
        sims.masked_fill_(~valid[..., None], float("-inf"))
    backward = sims.argmax(2)  # (C, m): best query patch of each candidate patch
    # (C, n): best candidate patch of each query patch, the reduction along a contiguous dim (first maximum on ties,
    # as along a strided one)
    forward = sims.transpose(1, 2).contiguous().argmax(2)
    mutual = torch.gather(backward, 1, forward) == torch.arange(query.shape[0], device=query.device)
    if valid is not None:
        mutual &= torch.gather(valid, 1, forward)
    return forward, mutual


def rapid_scores(query_xy: torch.Tensor, candidate_xy: torch.Tensor, partner: torch.Tensor, mutual: torch.Tensor,
                 ) -> torch.Tensor:
    """Rapid spatial scores ``(C,)`` (larger is better) of mutual matches, per query patch.

    With displacements d = candidate − query grid index of each match and their mean d̄ over a candidate's
    matches, s = Σ_matches (x_max − |d_x − d̄_x|)² + (y_max − |d_y − d̄_y|)², divided by the query's patch count;
    x_max, y_max are the largest grid indices of the query. ``query_xy`` ``(n, 2)``, ``candidate_xy`` ``(m, 2)``
    or per candidate ``(C, m, 2)``, ``partner`` and ``mutual`` ``(C, n)`` from :func:`mutual_nearest`.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> query = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
        >>> candidates = torch.stack([query, query[torch.tensor([5, 0, 3, 2, 1, 4])]])  # the same patches, shuffled
        >>> xy = patch_positions(2, 3).float()  # a 2 × 3 grid of windows in both images
        >>> rapid_scores(xy, xy, *mutual_nearest(query, candidates))  # consistent displacements score higher
        tensor([5.0000, 1.3333])
    """
    shift = gather_positions(candidate_xy, partner) - query_xy[None]  # (C, n, 2)
    weight = mutual.to(shift.dtype)[..., None]
    count = weight.sum(1, keepdim=True).clamp_min(1)
    mean = (shift * weight).sum(1, keepdim=True) / count
    anchor = query_xy.amax(0)  # (x_max, y_max)
    score = ((anchor - (shift - mean).abs()).square() * weight).sum((1, 2))
    return score / len(query_xy)


def gather_positions(positions: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """Positions ``(m, 2)`` or ``(C, m, 2)`` of the partners ``(C, n)`` -> ``(C, n, 2)``."""
    if positions.dim() == 2:
        return positions[partner]
    return torch.gather(positions, 1, partner[..., None].expand(-1, -1, 2))


def _homographies(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Homographies from 4 correspondences ``(..., 4, 2)`` each (h₃₃ = 1): -> (``(..., 3, 3)``, solvable mask)."""
    x, y, u, v = src[..., 0], src[..., 1], dst[..., 0], dst[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    system = torch.cat([rows_u, rows_v], -2)  # (..., 8, 8)
    h, info = torch.linalg.solve_ex(system, torch.cat([u, v], -1))
    h = torch.cat([h, torch.ones_like(h[..., :1])], -1).unflatten(-1, (3, 3))
    ok = (info == 0) & torch.isfinite(h).all((-1, -2))
    return torch.where(ok[..., None, None], h, torch.zeros_like(h)), ok


def ransac_inliers(src: torch.Tensor, dst: torch.Tensor, mask: torch.Tensor, threshold: float,
                   hypotheses: int = 256, generator: torch.Generator | None = None,
                   draws: torch.Tensor | None = None) -> torch.Tensor:
    """Inlier counts ``(C,)`` of the best of ``hypotheses`` 4-point homographies per candidate (RANSAC).

    ``src``, ``dst`` ``(C, M, 2)`` matched positions (map cells), ``mask`` ``(C, M)`` which matches are real; a
    match is an inlier when its reprojection error is below ``threshold`` cells. Fewer than 4 matches: 0.
    ``draws`` ``(C, hypotheses, 4)`` uniform [0, 1) samples to use instead of drawing them from ``generator`` (a
    batch then counts each candidate exactly as a call of its own with its draws would).

    Examples:
        >>> src = 10 * torch.rand(1, 20, 2, generator=torch.Generator().manual_seed(0))
        >>> dst = 2 * src + torch.tensor([1.0, -3.0])  # a scaling and a shift: a homography
        >>> dst[0, :5] += 7.0  # five wrong matches
        >>> ransac_inliers(src, dst, torch.ones(1, 20, dtype=torch.bool), threshold=0.5,
        ...                generator=torch.Generator().manual_seed(0))
        tensor([15])
    """
    src, dst = src.to(torch.float64), dst.to(torch.float64)
    count = mask.sum(1)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # real matches first
    src, dst = (torch.gather(t, 1, order[..., None].expand_as(t)) for t in (src, dst))
    mask = torch.gather(mask, 1, order)
    best = torch.zeros(len(src), dtype=torch.int64)
    if draws is None:
        draws = torch.rand(len(src), hypotheses, 4, generator=generator, dtype=torch.float64)
    for c0 in range(0, len(src), RANSAC_CHUNK):
        part = slice(c0, c0 + RANSAC_CHUNK)
        pick = (draws[part] * count[part, None, None]).long().clamp_max(src.shape[1] - 1).flatten(1)  # (c, T·4)
        sample = [torch.gather(t[part], 1, pick[..., None].expand(-1, -1, 2)).unflatten(1, (hypotheses, 4))
                  for t in (src, dst)]
        h, ok = _homographies(*sample)  # (c, T, 3, 3)
        points = torch.cat([src[part], torch.ones_like(src[part, :, :1])], -1)  # (c, M, 3)
        projected = torch.einsum("ctij,cmj->ctmi", h, points)
        with torch.no_grad():
            z = projected[..., 2:]
            xy = projected[..., :2] / torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
        offset = xy - dst[part, None]  # (c, T, M, 2); squared errors: no square root per reprojection
        close = offset[..., 0] * offset[..., 0] + offset[..., 1] * offset[..., 1] < threshold * threshold
        inliers = (close & mask[part, None] & ok[..., None] & (z[..., 0] > 0)).sum(-1)
        best[part] = inliers.amax(1)
    return torch.where(count >= 4, best, torch.zeros_like(best))
