"""NetVLAD against an independent naive implementation, gradients, invariances and α initialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from netvlad.nn import NetVLAD, choose_alpha
from netvlad.nn.functional import netvlad


def naive_netvlad(tokens: np.ndarray, weight: np.ndarray, bias, centroids: np.ndarray, normalize_input: bool):
    """Straight from the paper's formula, explicit loops over descriptors i and clusters k, float64."""
    out = []
    num_clusters, dim = centroids.shape
    for x in tokens:  # (N, D) per image
        vlad = np.zeros((num_clusters, dim))
        for i in range(len(x)):
            xi = x[i] / max(np.sqrt(np.sum(x[i] ** 2)), 1e-12) if normalize_input else x[i]
            b = bias if bias is not None else np.zeros(num_clusters)
            scores = [float(np.dot(weight[k], xi) + b[k]) for k in range(num_clusters)]
            top = max(scores)
            exps = [math.exp(s - top) for s in scores]
            for k in range(num_clusters):
                vlad[k] += exps[k] / sum(exps) * (xi - centroids[k])
        for k in range(num_clusters):
            norm = np.sqrt(np.sum(vlad[k] ** 2))
            if norm > 0:
                vlad[k] /= norm
        flat = vlad.reshape(-1)
        out.append(flat / np.sqrt(np.sum(flat**2)))
    return np.stack(out)


def _layer(parametrization: str, normalize_input: bool, k: int = 5, d: int = 7) -> NetVLAD:
    layer = NetVLAD(k, d, normalize_input=normalize_input, parametrization=parametrization, bias=True).double()
    with torch.no_grad():  # decoupled random w, b, c: the formula must hold for any values
        layer.conv.weight.normal_(0, 2.0)
        layer.conv.bias.normal_(0, 1.0)
        layer.centroids.normal_(0, 0.5)
    return layer


@pytest.mark.parametrize("parametrization", ["official", "paper"])
@pytest.mark.parametrize("normalize_input", [True, False])
@pytest.mark.parametrize("layout", ["map", "tokens"])
def test_equals_naive_reference(parametrization, normalize_input, layout):
    layer = _layer(parametrization, normalize_input)
    maps = torch.randn(3, 7, 4, 5, dtype=torch.float64)
    tokens = maps.flatten(2).transpose(1, 2)  # (B, N, D), positions in the same order
    got = layer(maps if layout == "map" else tokens.contiguous())
    weight = layer.conv.weight.detach().view(5, 7).numpy()
    want = naive_netvlad(tokens.numpy(), weight, layer.conv.bias.detach().numpy(), layer.centroids.detach().numpy(),
                         normalize_input)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=0, atol=1e-10)


def test_gradcheck():
    layer = _layer("paper", True, k=3, d=4)
    x = torch.randn(2, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    params = (layer.conv.weight, layer.conv.bias, layer.centroids)
    assert torch.autograd.gradcheck(lambda inp, w, b, c: netvlad(inp, w.view(3, 4), b, c), (x, *params))


def test_permuting_positions_changes_nothing():
    layer = _layer("official", True)
    tokens = torch.randn(2, 20, 7, dtype=torch.float64)
    perm = torch.randperm(20)
    torch.testing.assert_close(layer(tokens), layer(tokens[:, perm]), rtol=0, atol=1e-12)


def test_output_and_cluster_blocks_have_unit_norm():
    layer = _layer("paper", True, k=5, d=7)
    out = layer(torch.randn(4, 7, 3, 3, dtype=torch.float64))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4, dtype=torch.float64))
    blocks = out.view(4, 5, 7).norm(dim=2) * math.sqrt(5)  # every block non-empty under a softmax
    torch.testing.assert_close(blocks, torch.ones(4, 5, dtype=torch.float64))


def test_empty_cluster_block_stays_zero():
    layer = NetVLAD(2, 3, normalize_input=False, bias=True).double()
    with torch.no_grad():
        layer.conv.weight.zero_()
        layer.conv.bias.copy_(torch.tensor([0.0, -1000.0]))  # cluster 1 receives no mass
        layer.centroids.zero_()
    out = layer(torch.randn(1, 4, 3, dtype=torch.float64)).detach().view(2, 3)
    assert out[1].abs().max() < 1e-300 and abs(float(out[0].norm()) - 1) < 1e-12


def test_parametrisations_follow_their_formulas():
    centroids = torch.randn(4, 6, dtype=torch.float64)
    descriptors = torch.randn(300, 6)
    official = NetVLAD(4, 6, parametrization="official")
    alpha = official.init_from_centroids(centroids, descriptors)
    unit = centroids / centroids.norm(dim=1, keepdim=True)
    torch.testing.assert_close(official.conv.weight.detach().view(4, 6).double(), (alpha * unit).float().double())
    assert official.conv.bias is None
    paper = NetVLAD(4, 6, parametrization="paper")
    alpha = paper.init_from_centroids(centroids, descriptors)
    torch.testing.assert_close(paper.conv.weight.detach().view(4, 6).double(), (2 * alpha * centroids).float().double())
    torch.testing.assert_close(paper.conv.bias.detach().double(), (-alpha * (centroids**2).sum(1)).float().double())
    # paper: scores equal −α‖x − c_k‖² up to a per-descriptor constant, so the softmax is over squared distances.
    x = torch.nn.functional.normalize(descriptors.double(), dim=1)
    scores = x @ paper.conv.weight.detach().view(4, 6).double().T + paper.conv.bias.detach().double()
    torch.testing.assert_close(torch.softmax(scores, 1), torch.softmax(-alpha * torch.cdist(x, centroids) ** 2, 1),
                               atol=1e-5, rtol=0)


def test_geometric_alpha_is_the_official_closed_form():
    gaps = torch.rand(1000, dtype=torch.float64) + 0.1
    assert choose_alpha(gaps, "geometric") == pytest.approx(-math.log(0.01) / gaps.mean().item(), rel=1e-12)
    arithmetic = choose_alpha(gaps, "arithmetic")
    assert torch.exp(arithmetic * gaps).mean().item() == pytest.approx(100, rel=1e-9)


def test_default_alpha_is_the_official_codes_on_a_hand_computed_example():
    """Relja/netvlad addLayers.m: α = −ln(0.01) / mean(top-1 − top-2 score), by default, for both layer forms."""
    # official scores use the unit centroids (1, 0), (0, 1); x is unit already, so preL2 changes nothing
    centroids = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]], dtype=torch.float64)
    # official: dot products (1, 0), (.6, .8), (.8, .6) -> gaps 1, .2, .2 -> α = ln 100 / (1.4 / 3)
    assert NetVLAD(2, 2).init_from_centroids(centroids, x) == pytest.approx(9.868221827, rel=1e-9)
    # paper (vladv2): squared distances (0, 5), (.8, 1.8), (.4, 2.6) -> gaps 5, 1, 2.2 -> α = ln 100 / (8.2 / 3)
    paper = NetVLAD(2, 2, parametrization="paper")
    assert paper.init_from_centroids(centroids, x) == pytest.approx(1.684818361, rel=1e-9)
    # the other rule, by name: (e^α + 2 e^0.2α) / 3 = 100 -> α ≈ 5.682790
    assert NetVLAD(2, 2).init_from_centroids(centroids, x, ratio_average="arithmetic") == pytest.approx(5.682790,
                                                                                                      rel=1e-5)


def test_wrong_channel_count_names_expected_dim():
    layer = NetVLAD(4, 16)
    with pytest.raises(ValueError, match="D=16"):
        layer(torch.randn(1, 15, 3, 3))
    with pytest.raises(ValueError, match="D=16"):
        layer(torch.randn(1, 9, 15))


@pytest.mark.parametrize("normalize_input", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_hand_written_backward_equals_autograd(normalize_input, with_bias):
    """The training path (custom backward) and the inference path (plain autograd) agree, values and gradients."""
    from netvlad.nn.functional import _Aggregate, _aggregate

    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 9, 6, dtype=torch.float64, generator=g).transpose(1, 2).requires_grad_()  # token layout
    w = torch.randn(4, 6, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True) if with_bias else None
    c = torch.randn(4, 6, dtype=torch.float64, generator=g, requires_grad=True)
    upstream = torch.randn(3, 4, 6, dtype=torch.float64, generator=g)
    leaves = [t for t in (x, w, b, c) if t is not None]
    custom = _Aggregate.apply(x, w, b, c, normalize_input)
    grads_custom = torch.autograd.grad((custom * upstream).sum(), leaves)
    plain = _aggregate(x, w, b, c, normalize_input)[0]
    grads_plain = torch.autograd.grad((plain * upstream).sum(), leaves)
    torch.testing.assert_close(custom, plain, rtol=0, atol=1e-12)
    for got, want in zip(grads_custom, grads_plain, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    tokens = x.transpose(1, 2)  # (B, N, D)
    with torch.no_grad():
        inference = netvlad(tokens, w, b, c, normalize_input)
    torch.testing.assert_close(netvlad(tokens, w, b, c, normalize_input), inference, rtol=0, atol=1e-12)
