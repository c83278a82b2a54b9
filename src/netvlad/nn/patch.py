"""Patch-NetVLAD descriptors (Hausler et al., CVPR 2021): the NetVLAD vector of every P×P window of a feature map.

Each window's residual sum V(k) = Σ_i a_k(x_i)·x_i − (Σ_i a_k(x_i))·c_k over its P² cells is one small matrix
product per window — its cells' soft assignments ``(K, P²)`` times their descriptors ``(P², D)`` — all windows in
one batched product, from the cells gathered window by window (:func:`window_cells`). No per-cell residual maps
``(K, D, H, W)`` are made, and no large sums are subtracted, as integral images would. Windows are processed in
chunks within a memory budget, and a projection (PCA whitening) is applied to a chunk's K·D-dimensional vectors in
one product (``W·(v/‖v‖) = (W·v)/‖v‖``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from netvlad.nn import functional as VF

__all__ = ["window_grid", "window_cells", "integral_image", "window_sums", "cell_rows", "patch_vlad_chunks",
           "patch_netvlad", "projection_work", "projection_rows", "shared_products_keep_bits"]

# residual sums of one chunk of windows, (windows, K, D) float32, within 4 MiB (cache-sized), and the windows the
# projection takes at once (each product reads the whole K·D × out weight) within 64 MiB: 204 windows of 81,920-D,
# where the float32 GEMM of Gardens Point's shapes runs at 92 GFLOPS on one thread (76 at 72 windows). A buffer
# above glibc's 32 MiB mmap ceiling is mapped and zero-filled by the kernel at every allocation, so callers that
# project batch after batch pass one ``work`` buffer (:func:`projection_work`) for every call
CHUNK_BYTES = 1 << 22
PROJECT_BYTES = 1 << 26
# images whose windows may share one projection product: each product reads the whole K·D × out weight (168 MB at
# K = 64, D = 1,280), so a product of one 480 px image's 55 windows ran at 54 GFLOPS on one AVX2 thread and one of
# three images' 165 at 66; more than 4 would make the check of their bits (shared_products_keep_bits) long
SHARED_IMAGES = 4


def window_grid(height: int, width: int, size: int, stride: int) -> tuple[int, int]:
    """Rows and columns of P×P windows at stride s on an H×W map (0, 0 when the map is smaller than P)."""
    if size < 1 or stride < 1:
        raise ValueError(f"patch size and stride must be ≥ 1, got size={size}, stride={stride}")
    if height < size or width < size:
        return 0, 0
    return (height - size) // stride + 1, (width - size) // stride + 1


def window_cells(height: int, width: int, size: int, stride: int) -> torch.Tensor:
    """Row-major indices of each P×P window's cells in the flattened H×W map: ``(rows·cols, P·P)`` int64, windows
    row-major over :func:`window_grid`, cells row-major inside a window.

    Examples:
        >>> window_cells(3, 4, 2, 2)  # two 2 × 2 windows on a 3 × 4 map: cells (0, 1, 4, 5) and (2, 3, 6, 7)
        tensor([[0, 1, 4, 5],
                [2, 3, 6, 7]])
    """
    rows, cols = window_grid(height, width, size, stride)
    corners = (torch.arange(rows)[:, None] * stride * width + torch.arange(cols)[None] * stride).reshape(-1, 1)
    offsets = (torch.arange(size)[:, None] * width + torch.arange(size)[None]).reshape(1, -1)
    return corners + offsets


def integral_image(x: torch.Tensor) -> torch.Tensor:
    """Summed-area table of ``(..., H, W)`` -> ``(..., H+1, W+1)`` in float64, with a zero first row and column."""
    table = x.new_zeros(*x.shape[:-2], x.shape[-2] + 1, x.shape[-1] + 1, dtype=torch.float64)
    table[..., 1:, 1:] = x
    torch.cumsum(table, -1, out=table)  # in place: one table in memory, not three
    return torch.cumsum(table, -2, out=table)


def window_sums(table: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """Sums over every P×P window (stride s) from an integral image ``(..., H+1, W+1)`` -> ``(..., rows, cols)``."""
    p, s = size, stride  # window (i, j) covers rows i..i+P−1: T[i+P, j+P] − T[i, j+P] − T[i+P, j] + T[i, j]
    return table[..., p::s, p::s] - table[..., :-p:s, p::s] - table[..., p::s, :-p:s] + table[..., :-p:s, :-p:s]


def _per_chunk(row_bytes: int, budget: int) -> int:
    return max(1, budget // row_bytes)


def _window_cells(x: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """Every image's windows' cells ``(B·rows·cols, P²)`` as rows of the batch's flattened ``(B·H·W)`` cells."""
    cells = window_cells(x.shape[2], x.shape[3], size, stride).to(x.device)
    return (cells + torch.arange(len(x), device=x.device)[:, None, None] * cells.new_tensor(x.shape[2] * x.shape[3])
            ).flatten(0, 1)


def cell_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, normalize_input: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(local descriptors as the layer sees them ``(B·H·W, D)``, soft assignments ``(B·H·W, K)``) of feature maps
    ``(B, D, H, W)``, one row per cell, images one after the other: what the windows of every patch size are
    computed from (:func:`patch_netvlad` takes them as ``by_cell``, so that several sizes compute them once).

    Examples:
        >>> feats, assign = cell_rows(torch.rand(2, 16, 3, 4), torch.randn(8, 16), None)
        >>> feats.shape, assign.shape, bool(torch.allclose(assign.sum(1), torch.ones(24)))
        (torch.Size([24, 16]), torch.Size([24, 8]), True)
    """
    # rows first, always a contiguous copy: for one image the reshape would be a strided view, whose norms torch
    # sums in another order than a batch's copy, so an image's patches would depend on the batch it came in
    feats = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).contiguous()
    if normalize_input:
        feats = VF.l2_normalize(feats, dim=1)
    cells = x.shape[2] * x.shape[3]  # each image's cells in a product of their own, as its windows' projection
    logits = torch.cat([part @ weight.T if bias is None else torch.addmm(bias, part, weight.T)
                        for part in feats.split(cells)]) if len(feats) else feats.new_empty(0, len(weight))
    return feats, torch.softmax(logits, dim=1)


def _window_vlad(feats: torch.Tensor, assign: torch.Tensor, cells: torch.Tensor, centroids: torch.Tensor,
                 out: torch.Tensor) -> torch.Tensor:
    """Intra-normalised residual sums of the windows ``cells`` ``(n, P²)`` written into ``out`` ``(n, K, D)`` ->
    their intra norms ``(n, K, 1)`` before normalising (each row divided by its norm, at least 1e-12, as
    :func:`netvlad.nn.functional.l2_normalize` divides)."""
    flat, shape = cells.reshape(-1), (*cells.shape, -1)  # index_select: the rows gathered faster than by indexing
    weights = assign.index_select(0, flat).view(shape).transpose(1, 2)  # (windows, K, P²)
    torch.bmm(weights, feats.index_select(0, flat).view(shape), out=out)  # Σ_i a_k(x_i)·x_i
    out.addcmul_(weights.sum(2, keepdim=True), centroids, value=-1)  # − (Σ_i a_k(x_i))·c_k, in place
    norms = torch.linalg.vector_norm(out, dim=2, keepdim=True)
    out.div_(norms.clamp_min(1e-12))  # intra-normalisation, as in the layer
    return norms


def patch_vlad_chunks(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, centroids: torch.Tensor,
                      size: int, stride: int = 1, normalize_input: bool = True, chunk_bytes: int = CHUNK_BYTES,
                      by_cell: tuple[torch.Tensor, torch.Tensor] | None = None
                      ) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield (slice of the ``B·rows·cols`` windows, their intra-normalised residuals ``(windows, K, D)``) chunk by
    chunk.

    ``x`` ``(B, D, H, W)`` feature maps; windows are image-major, then row-major over the :func:`window_grid`. A
    chunk holds as many windows as keep their residuals ``windows·K·D`` within ``chunk_bytes`` (one at least).
    ``by_cell``: the maps' :func:`cell_rows`, when another patch size computed them already.
    """
    if x.dim() != 4 or x.shape[1] != centroids.shape[1]:
        raise ValueError(f"expected feature maps as (B, {centroids.shape[1]}, H, W), got {tuple(x.shape)}")
    cells = _window_cells(x, size, stride)
    if not len(cells):
        return
    feats, assign = by_cell or cell_rows(x, weight, bias, normalize_input)
    centroids = centroids.to(feats.dtype)
    step = _per_chunk(centroids.numel() * feats.element_size(), chunk_bytes)
    for w0 in range(0, len(cells), step):
        part = slice(w0, min(w0 + step, len(cells)))
        vlad = feats.new_empty(part.stop - part.start, *centroids.shape)
        _window_vlad(feats, assign, cells[part], centroids, vlad)
        yield part, vlad


def projection_rows(num_clusters: int, dim: int, dtype: torch.dtype = torch.float32,
                    project_bytes: int = PROJECT_BYTES, chunk_bytes: int = CHUNK_BYTES) -> int:
    """The most windows :func:`patch_netvlad` projects in one product (what :func:`projection_work` holds): whole
    aggregation chunks of ``chunk_bytes`` within ``project_bytes``.

    Examples:
        >>> projection_rows(64, 1280)  # 81,920-D windows within 64 MiB
        204
    """
    row = num_clusters * dim * torch.empty(0, dtype=dtype).element_size()
    step = _per_chunk(row, chunk_bytes)
    return step * _per_chunk(step * row, project_bytes)


def projection_work(num_clusters: int, dim: int, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu", project_bytes: int = PROJECT_BYTES) -> torch.Tensor:
    """A flat buffer holding the largest block of K·D-D vectors :func:`patch_netvlad` projects at once, to pass as
    its ``work`` call after call.

    Examples:
        >>> projection_work(64, 1280).numel() * 4 // 2**20  # MiB: 204 windows of 81,920 float32
        63
    """
    return torch.empty(projection_rows(num_clusters, dim, dtype, project_bytes) * num_clusters * dim, dtype=dtype,
                       device=device)


def shared_products_keep_bits(project: torch.Tensor, windows: int, images: int, seed: int = 0) -> bool:
    """Whether one product of ``images`` images' windows (``windows`` each) gives every image's projected rows the
    same bits as a product of that image alone, and as a product of any run of fewer of the images: checked with
    this process's matrix product at torch's current thread count, on random rows and the projection weight
    ``project`` ``(out, K·D)`` itself, which set the shapes (a BLAS splits and blocks a product by its shape: a
    product of one row takes another path than one of many, and two threads split a small product differently).

    What :class:`netvlad.match.verify.PatchExtractor` checks once per window count and thread count before
    passing ``shared`` to :func:`patch_netvlad`, so that an image's patches stay the same bits alone as in any
    batch.

    Examples:
        >>> project = torch.randn(16, 640)  # a 640-D to 16-D projection
        >>> keeps = shared_products_keep_bits(project, windows=12, images=3)  # this CPU's answer, True or False
        >>> shared_products_keep_bits(project, windows=12, images=1)  # one image: no product to compare with
        True
    """
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(images * windows, project.shape[1], generator=generator).to(project)
    whole = _project(rows, project)
    return all(torch.equal(_project(rows[start * windows:(start + n) * windows], project),
                           whole[start * windows:(start + n) * windows])
               for n in range(1, images) for start in range(images - n + 1))


def _project(vectors: torch.Tensor, project: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``vectors @ project.T`` into ``out`` (the rows as :func:`patch_netvlad` computes them)."""
    if out is None:
        out = vectors.new_empty(len(vectors), project.shape[0])
    return torch.mm(vectors, project.T, out=out)


def patch_netvlad(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, centroids: torch.Tensor,
                  size: int, stride: int = 1, normalize_input: bool = True,
                  projection: tuple[torch.Tensor, torch.Tensor] | None = None, chunk_bytes: int = CHUNK_BYTES,
                  project_bytes: int = PROJECT_BYTES, work: torch.Tensor | None = None,
                  by_cell: tuple[torch.Tensor, torch.Tensor] | None = None, shared: int = 1) -> torch.Tensor:
    """Patch NetVLAD descriptors of every P×P window: ``(B, D, H, W)`` -> ``(B, rows·cols, out)`` row-major.

    Without ``projection``: intra-normalised then L2-normalised, out = K·D, cluster-major (equal to
    :func:`netvlad.nn.functional.netvlad` on each cropped window). With ``projection`` = (weight ``(out, K·D)``,
    bias ``(out,)``) of a PCA whitening: that whitening applied to the L2-normalised vector, then L2-normalised; the
    weight's dtype is the product's (bfloat16 halves its time on CPUs with bfloat16 instructions, at ≈ 3 digits).

    With a projection, the windows' intra-normalised K·D-D vectors are aggregated (``chunk_bytes`` at a time) into
    one block of up to ``project_bytes`` and projected by one ``(windows, K·D) @ (K·D, out)`` product per block,
    each image's windows in blocks of their own (an image's patches are the same bits in any batch), or, with
    ``shared`` > 1, the windows of up to ``shared`` consecutive images in one block (at most ``project_bytes``; the
    weight read once for them all: pass it only where :func:`shared_products_keep_bits` holds for these shapes and
    that many images, and the patches stay the same bits); each vector's
    global L2 norm is applied after the product (``W·(v/‖v‖) = (W·v)/‖v‖``), from its clusters' intra norms (each
    normalised row has norm 1, or less when its residual was below 1e-12), so the K·D-D vectors are written once and
    read once. ``work``: a flat buffer of
    ``x``'s dtype the blocks are written into when it holds one (:func:`projection_work`), else one is allocated.
    ``by_cell``: the maps' :func:`cell_rows`, computed once for every patch size of the same maps.
    """
    if shared < 1 or (projection is None and shared > 1):
        raise ValueError(f"shared must be ≥ 1 images, and more than 1 only with a projection (the products it "
                         f"shares), got shared={shared} with{'out' if projection is None else ''} a projection")
    num_clusters, dim = centroids.shape
    rows, cols = window_grid(x.shape[2], x.shape[3], size, stride)
    total, row_bytes = len(x) * rows * cols, num_clusters * dim * x.element_size()
    if projection is None:
        out = x.new_zeros(total, num_clusters * dim)
        for part, vlad in patch_vlad_chunks(x, weight, bias, centroids, size, stride, normalize_input, chunk_bytes,
                                            by_cell):
            flat = vlad.flatten(1)  # the global L2 norm of the intra-normalised vector
            torch.div(flat, flat.norm(dim=1, keepdim=True).clamp_min(1e-12), out=out[part])
        return out.view(len(x), rows * cols, num_clusters * dim)
    if x.dim() != 4 or x.shape[1] != dim:
        raise ValueError(f"expected feature maps as (B, {dim}, H, W), got {tuple(x.shape)}")
    project, shift = projection
    out = x.new_zeros(total, project.shape[0])
    if total:
        cells = _window_cells(x, size, stride)
        feats, assign = by_cell or cell_rows(x, weight, bias, normalize_input)
        centroids = centroids.to(feats.dtype)
        step = _per_chunk(row_bytes, chunk_bytes)  # windows aggregated at once (cache-sized)
        windows = rows * cols
        most = projection_rows(num_clusters, dim, x.dtype, project_bytes, chunk_bytes)  # windows projected at once
        # images whose windows share a product (never in a product of another dtype, which the check did not run)
        images = max(1, min(shared, len(x), most // max(1, windows))) if project.dtype == out.dtype else 1
        block = images * windows if images > 1 else min(windows, most)
        need = block * num_clusters * dim
        fits = work is not None and work.numel() >= need and work.dtype == feats.dtype and work.device == x.device
        buffer = (work[:need] if fits else feats.new_empty(need)).view(block, num_clusters, dim)
        # each image's windows in products of their own (a product's rows round by its shape: two threads split a
        # small one differently), or ``shared`` images' together where their rows were checked to keep their bits,
        # so an image's patches are the same bits alone as in any batch
        starts = ([(b0, min(block, total - b0)) for b0 in range(0, total, block)] if images > 1 else
                  [(b0, min(block, image + windows - b0)) for image in range(0, total, windows)
                   for b0 in range(image, image + windows, block)])
        for b0, n in starts:
            scale = torch.empty(n, dtype=feats.dtype, device=x.device)  # 1 / the global norm
            for w0 in range(0, n, step):
                w1 = min(n, w0 + step)
                norms = _window_vlad(feats, assign, cells[b0 + w0:b0 + w1], centroids, buffer[w0:w1])[..., 0]
                kept = norms / norms.clamp_min(1e-12)  # each intra-normalised row's norm: 1, or less below 1e-12
                scale[w0:w1] = kept.square().sum(1).sqrt().clamp_min(1e-12).reciprocal()
            vectors = buffer[:n].view(n, -1)
            if project.dtype == out.dtype:  # one (windows, K·D) @ (K·D, out) product, straight into the rows
                _project(vectors, project, out[b0:b0 + n])
            else:
                out[b0:b0 + n] = vectors.to(project.dtype) @ project.T
            out[b0:b0 + n] *= scale[:, None]
    out = VF.l2_normalize(out + shift.to(out.dtype), dim=1)
    return out.view(len(x), rows * cols, project.shape[0])
