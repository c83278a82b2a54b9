"""Patch-NetVLAD descriptors from per-window matrix products equal the NetVLAD layer on each cropped window, and the
separable box sums of the per-cell residual maps they replaced."""

import numpy as np
import pytest
import torch

from netvlad.nn import NetVLAD, PCAWhitening
from netvlad.nn.patch import (
    cell_rows,
    patch_netvlad,
    projection_rows,
    projection_work,
    shared_products_keep_bits,
    window_cells,
    window_grid,
)
from netvlad.threads import torch_threads


def _layer(k: int, d: int, parametrization: str = "official") -> NetVLAD:
    torch.manual_seed(0)
    layer = NetVLAD(num_clusters=k, dim=d, parametrization=parametrization).double()
    with torch.no_grad():
        layer.init_from_centroids(torch.randn(k, d, dtype=torch.float64), alpha=3.0)
    return layer


def _args(layer: NetVLAD):
    return layer.conv.weight.view(layer.num_clusters, layer.dim), layer.conv.bias, layer.centroids


@pytest.mark.parametrize(("height", "width", "size", "stride"),
                         [(6, 9, 2, 1), (7, 7, 3, 2), (10, 6, 5, 1), (9, 13, 4, 3), (5, 5, 5, 1), (8, 11, 1, 1)])
@pytest.mark.parametrize("parametrization", ["official", "paper"])
def test_each_patch_equals_netvlad_on_the_cropped_window(height, width, size, stride, parametrization):
    layer = _layer(5, 12, parametrization)
    torch.manual_seed(1)
    x = torch.randn(2, 12, height, width, dtype=torch.float64).relu()
    with torch.no_grad():
        patches = patch_netvlad(x, *_args(layer), size=size, stride=stride, chunk_bytes=1)
        rows, cols = window_grid(height, width, size, stride)
        assert patches.shape == (2, rows * cols, 5 * 12)
        for r in range(rows):
            for c in range(cols):
                i, j = r * stride, c * stride
                expected = layer(x[:, :, i:i + size, j:j + size])
                torch.testing.assert_close(patches[:, r * cols + c], expected, atol=1e-5, rtol=0)


def test_float32_map_matches_to_1e5():
    layer = _layer(8, 32).float()
    torch.manual_seed(2)
    x = torch.randn(1, 32, 15, 20).relu()
    with torch.no_grad():
        patches = patch_netvlad(x, *_args(layer), size=5, stride=1)
        expected = layer(x[:, :, 3:8, 7:12])
    torch.testing.assert_close(patches[0, 3 * 16 + 7], expected[0], atol=1e-5, rtol=0)


def test_projection_applies_the_whitening_chunk_by_chunk():
    layer = _layer(4, 6)
    torch.manual_seed(3)
    x = torch.randn(1, 6, 8, 8, dtype=torch.float64).relu()
    whitening = PCAWhitening(24, 10).double()
    with torch.no_grad():
        whitening.fit(torch.randn(40, 24, dtype=torch.float64))
        raw = patch_netvlad(x, *_args(layer), size=3, stride=2)
        projected = patch_netvlad(x, *_args(layer), size=3, stride=2, chunk_bytes=2 * 4 * 6 * 8,
                                  projection=(whitening.linear.weight, whitening.linear.bias))
    torch.testing.assert_close(projected[0], whitening(raw[0]), atol=1e-10, rtol=0)


def test_map_smaller_than_the_patch_has_no_windows():
    layer = _layer(3, 4)
    assert window_grid(4, 9, 5, 1) == (0, 0)
    with torch.no_grad():
        out = patch_netvlad(torch.rand(1, 4, 4, 9, dtype=torch.float64), *_args(layer), size=5)
    assert out.shape == (1, 0, 12)


def window_vlad(window: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, centroids: np.ndarray
                ) -> np.ndarray:
    """Patch-NetVLAD's patch descriptor of one window (D, P, P), from the NetVLAD formula in float64: each local
    descriptor L2-normalised, a_k = softmax_k(w_k·x + b_k), V(k) = Σ_i a_k(x_i)(x_i − c_k) cluster by cluster,
    intra-normalised, then L2-normalised as one vector."""
    x = window.reshape(window.shape[0], -1).T.astype(np.float64)  # (P·P, D)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    logits = x @ weight.T + (0 if bias is None else bias)
    a = np.exp(logits - logits.max(1, keepdims=True))
    a /= a.sum(1, keepdims=True)
    vlad = np.stack([(a[:, k:k + 1] * (x - centroids[k])).sum(0) for k in range(len(centroids))])
    vlad /= np.linalg.norm(vlad, axis=1, keepdims=True)
    return vlad.reshape(-1) / np.linalg.norm(vlad)


@pytest.mark.parametrize(("size", "stride"), [(2, 1), (3, 1), (3, 2)])
def test_patches_of_real_feature_maps_equal_the_window_formula(gardens_point_maps, size, stride):
    maps, layer = gardens_point_maps
    weight, bias, centroids = (None if t is None else t.detach().double().numpy() for t in _args(layer))
    with torch.no_grad():
        patches = patch_netvlad(maps, *_args(layer), size=size, stride=stride).numpy()
    rows, cols = window_grid(maps.shape[2], maps.shape[3], size, stride)
    for b in (0, 3):
        for r in range(rows):
            for c in range(cols):
                window = maps[b, :, r * stride:r * stride + size, c * stride:c * stride + size].double().numpy()
                np.testing.assert_allclose(patches[b, r * cols + c], window_vlad(window, weight, bias, centroids),
                                           atol=1e-5, rtol=0)


def box_sum_patches(x: torch.Tensor, layer: NetVLAD, size: int, stride: int, projection=None) -> torch.Tensor:
    """Patch descriptors by the route the per-window products replaced, in ``x``'s precision: the per-cell weighted
    residuals a_k(x_i)·(x_i − c_k) of every cluster as maps, their P×P window sums by separable strided sums."""
    weight, bias, centroids = _args(layer)
    feats = torch.nn.functional.normalize(x, dim=1)
    logits = torch.einsum("kd,bdhw->bkhw", weight, feats) + (0 if bias is None else bias[:, None, None])
    residuals = torch.softmax(logits, 1)[:, :, None] * (feats[:, None] - centroids[:, :, None, None])
    sums = residuals.flatten(1, 2).unfold(2, size, stride).sum(-1).unfold(3, size, stride).sum(-1)
    vlad = sums.unflatten(1, residuals.shape[1:3]).flatten(3).permute(0, 3, 1, 2)  # (B, windows, K, D)
    vlad = torch.nn.functional.normalize(torch.nn.functional.normalize(vlad, dim=3).flatten(2), dim=2)
    if projection is None:
        return vlad
    return torch.nn.functional.normalize(vlad @ projection[0].T + projection[1], dim=2)


def test_window_cells_are_each_windows_cells_row_major():
    cells = window_cells(7, 9, 3, 2)
    rows, cols = window_grid(7, 9, 3, 2)
    grid = torch.arange(7 * 9).view(7, 9)
    for r in range(rows):
        for c in range(cols):
            assert cells[r * cols + c].tolist() == grid[2 * r:2 * r + 3, 2 * c:2 * c + 3].reshape(-1).tolist()


ROW = 8 * 1280 * 4  # bytes of one K·D-D window vector of the real maps below


# blocks projected at once: 5 windows (3 a map: blocks across images), everything, 9 windows of chunks of 3
@pytest.mark.parametrize(("size", "stride", "chunk_bytes", "project_bytes"),
                         [(5, 1, 1, 5 * ROW), (2, 1, 1 << 24, 1 << 26), (3, 2, 3 * ROW, 10 * ROW)])
def test_real_maps_give_the_box_sum_routes_patches_in_float32(gardens_point_maps, size, stride, chunk_bytes,
                                                              project_bytes):
    maps, layer = gardens_point_maps  # (4, 1280, 5, 7) real MobileNetV2 maps, K = 8
    torch.manual_seed(4)
    projection = (torch.randn(64, layer.output_dim) / 100, torch.randn(64) / 10)
    work = projection_work(8, 1280, project_bytes=project_bytes)
    with torch.no_grad():
        for proj in (None, projection):
            ours = patch_netvlad(maps, *_args(layer), size=size, stride=stride, projection=proj,
                                 chunk_bytes=chunk_bytes, project_bytes=project_bytes)
            again = patch_netvlad(maps, *_args(layer), size=size, stride=stride, projection=proj,
                                  chunk_bytes=chunk_bytes, project_bytes=project_bytes, work=work)
            assert torch.equal(ours, again)  # a reused work buffer changes no bit
            torch.testing.assert_close(ours, box_sum_patches(maps, layer, size, stride, proj), atol=2e-6, rtol=0)
            alone = patch_netvlad(maps[2:3], *_args(layer), size=size, stride=stride, projection=proj)
            torch.testing.assert_close(ours[2:3], alone, atol=2e-6, rtol=0)  # an image's patches, batched or not


@pytest.mark.parametrize("normalize_input", [True, False])
@pytest.mark.parametrize("parametrization", ["official", "paper"])  # without and with a bias
def test_cell_rows_are_each_cells_descriptor_and_softmax_assignment(normalize_input, parametrization):
    layer = _layer(6, 10, parametrization)
    torch.manual_seed(6)
    x = torch.randn(2, 10, 3, 4, dtype=torch.float64).relu()
    weight, bias, _ = _args(layer)
    feats, assign = cell_rows(x, weight, bias, normalize_input)
    for b in range(2):
        for i in range(3):
            for j in range(4):
                cell = x[b, :, i, j] / (x[b, :, i, j].norm().clamp_min(1e-12) if normalize_input else 1)
                row = b * 12 + i * 4 + j  # images one after the other, cells row-major
                torch.testing.assert_close(feats[row], cell, atol=1e-12, rtol=0)
                logits = weight @ cell + (0 if bias is None else bias)
                torch.testing.assert_close(assign[row], torch.softmax(logits, 0), atol=1e-12, rtol=0)


def test_cell_rows_given_once_for_several_sizes_change_no_bit(gardens_point_maps):
    maps, layer = gardens_point_maps
    weight, bias, centroids = _args(layer)
    torch.manual_seed(7)
    projection = (torch.randn(32, layer.output_dim) / 100, torch.randn(32) / 10)
    by_cell = cell_rows(maps, weight, bias)
    with torch.no_grad():
        for size in (2, 3):
            for proj in (None, projection):
                alone = patch_netvlad(maps, weight, bias, centroids, size, projection=proj)
                shared = patch_netvlad(maps, weight, bias, centroids, size, projection=proj, by_cell=by_cell)
                assert torch.equal(alone, shared)


@pytest.mark.parametrize("threads", [1, 2])  # two threads split a small product by its shape
def test_an_image_s_patches_alone_are_its_patches_in_a_batch_bit_for_bit(gardens_point_maps, threads):
    maps, layer = gardens_point_maps
    weight, bias, centroids = _args(layer)
    torch.manual_seed(8)
    projection = (torch.randn(32, layer.output_dim) / 100, torch.randn(32) / 10)
    maps = maps.contiguous()  # as the backbone hands them over (one image alone: its rows a strided view)
    with torch_threads(threads), torch.no_grad():
        for size in (2, 3, 4):  # 24, 15 and 8 windows an image
            for proj in (None, projection):
                batch = patch_netvlad(maps, weight, bias, centroids, size, projection=proj)
                for b in range(len(maps)):
                    alone = patch_netvlad(maps[b:b + 1], weight, bias, centroids, size, projection=proj)
                    assert torch.equal(alone[0], batch[b])


@pytest.mark.parametrize("threads", [1, 2])
def test_images_sharing_a_product_keep_their_bits_wherever_the_check_says_so(gardens_point_maps, threads):
    maps, layer = gardens_point_maps
    weight, bias, centroids = _args(layer)
    torch.manual_seed(9)
    projection = (torch.randn(32, layer.output_dim) / 100, torch.randn(32) / 10)
    maps = maps.contiguous()
    with torch_threads(threads), torch.no_grad():
        # 24, 15, 8 and 1 windows an image, the 4 images in one product (one row alone takes another path)
        for x, size in ((maps, 2), (maps, 3), (maps, 4), (maps[..., :5].contiguous(), 5)):
            rows, cols = window_grid(x.shape[2], x.shape[3], size, 1)
            own = patch_netvlad(x, weight, bias, centroids, size, projection=projection)
            shared = patch_netvlad(x, weight, bias, centroids, size, projection=projection, shared=4)
            torch.testing.assert_close(shared, own, atol=2e-6, rtol=0)  # float rounding at most, either way
            # the check never allows a product that changes an image's bits (it may refuse one that would not)
            assert shared_products_keep_bits(projection[0], rows * cols, 4) <= torch.equal(shared, own)
            for start, n in ((0, 1), (1, 2), (3, 1), (1, 3)):  # runs of images alone or in smaller products
                part = patch_netvlad(x[start:start + n], weight, bias, centroids, size, projection=projection,
                                     shared=4)
                assert shared_products_keep_bits(projection[0], rows * cols, 4) <= torch.equal(
                    part, shared[start:start + n])


def test_shared_products_fit_the_projection_buffer():
    assert projection_rows(64, 1280) == 204  # three 480 px images' 55 windows (165) share one product
    assert projection_work(64, 1280).numel() == projection_rows(64, 1280) * 64 * 1280
    layer = _layer(4, 6).float()
    torch.manual_seed(10)
    x = torch.randn(5, 6, 6, 6).relu()
    projection = (torch.randn(8, 24), torch.zeros(8))
    with torch.no_grad():  # 16 windows an image, 2 at most in a block of 2 · 2 · 24 floats (one aggregation chunk)
        small = patch_netvlad(x, *_args(layer), size=3, projection=projection, shared=4, chunk_bytes=2 * 24 * 4,
                              project_bytes=32 * 24 * 4)
        own = patch_netvlad(x, *_args(layer), size=3, projection=projection)
    torch.testing.assert_close(small, own, atol=1e-6, rtol=0)


def test_sharing_products_is_refused_without_a_projection_or_below_one_image():
    layer = _layer(4, 6).float()
    x = torch.rand(2, 6, 4, 4)
    projection = (torch.randn(8, 24), torch.zeros(8))
    with pytest.raises(ValueError, match="only with a projection"):
        patch_netvlad(x, *_args(layer), size=2, shared=2)  # no products to share
    with pytest.raises(ValueError, match="shared=0"):
        patch_netvlad(x, *_args(layer), size=2, projection=projection, shared=0)
    with torch.no_grad():
        assert patch_netvlad(x, *_args(layer), size=2, shared=1).shape == (2, 9, 24)  # the default, without one
