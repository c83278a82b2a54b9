"""MATLAB/MatConvNet NetVLAD .mat -> our model: same descriptors as MatConvNet's forward pass (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from netvlad.models.converters import ConvertOptions, convert, detect_format

# VGG16 to conv5_3 as MatConvNet's imagenet-vgg-verydeep-16 lists it (in, out) per block.
VGG16_BLOCKS = [[(3, 64), (64, 64)], [(64, 128), (128, 128)], [(128, 256), (256, 256), (256, 256)],
                [(256, 512), (512, 512), (512, 512)], [(512, 512), (512, 512), (512, 512)]]
AVERAGE_RGB = (123.68, 116.779, 103.939)
K, PCS, SIZE = 4, 16, 32


def cell(*items) -> np.ndarray:
    """A MATLAB 1×n cell array for scipy.io.savemat."""
    out = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        out[0, i] = item
    return out


def vgg16_layers(rng: np.random.Generator) -> list[dict]:
    """conv/relu/pool structs up to conv5_3, relu and pool swapped as relja_swapLayersForEfficiency does."""
    layers = []
    for b, block in enumerate(VGG16_BLOCKS, start=1):
        for c, (cin, cout) in enumerate(block, start=1):
            weight = (rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2.0 / (9 * cin))).astype(np.float32)
            bias = (0.01 * rng.standard_normal((cout, 1))).astype(np.float32)
            layers.append({"type": "conv", "name": f"conv{b}_{c}", "weights": cell(weight, bias),
                           "pad": np.array([[1, 1, 1, 1]], float), "stride": np.array([[1, 1]], float),
                           "precious": False})
            last = c == len(block)
            if last and b < 5:
                layers.append({"type": "pool", "name": f"pool{b}", "method": "max",
                               "pool": np.array([[2, 2]], float), "stride": np.array([[2, 2]], float),
                               "pad": np.array([[0, 0, 0, 0]], float)})
            if not (last and b == 5):  # cropped at conv5_3, before its ReLU
                layers.append({"type": "relu", "name": f"relu{b}_{c}", "leak": 0.0})
    return layers


def netvlad_layers(rng: np.random.Generator, vladv2: bool, whiten: bool) -> list[dict]:
    """preL2, vlad:core (layerVLAD or layerVLADv2 as a struct), intranorm, postL2 (, WPCA, finalL2)."""
    d = 512
    l2 = {"type": "normalize", "param": np.array([[2 * d, 1e-12, 1, 0.5]])}
    clusters = rng.standard_normal((d, K))
    clusters /= np.linalg.norm(clusters, axis=0)
    assign = (8.0 * clusters + 0.5 * rng.standard_normal((d, K))).reshape(1, 1, d, K).astype(np.float32)
    offsets = (-clusters).reshape(1, 1, d, K).astype(np.float32)
    weights = cell(assign, (rng.standard_normal((1, K))).astype(np.float32), offsets) if vladv2 else \
        cell(assign, offsets)
    layers = [
        {**l2, "name": "preL2", "precious": 0},
        {"type": "custom", "name": "vlad:core", "K": float(K), "D": float(d), "vladDim": float(K * d),
         "weights": weights, "momentum": cell(), "learningRate": np.array([[1.0, 1.0]]),
         "weightDecay": np.array([[0.0, 0.0]]), "precious": False},
        {**l2, "name": "vlad:intranorm", "precious": 0},
        {"type": "custom", "name": "postL2", "precious": False},
    ]
    if whiten:
        pca = rng.standard_normal((1, 1, K * d, PCS)).astype(np.float32)  # rows u_p/√λ_p: ‖·‖ ≈ √(K·D)
        bias = (0.01 * rng.standard_normal((PCS, 1))).astype(np.float32)
        layers += [{"type": "conv", "name": "WPCA", "weights": cell(pca, bias), "stride": 1.0, "pad": 0.0,
                    "opts": cell(), "precious": False},
                   {"type": "custom", "name": "finalL2", "precious": False}]
    return layers


def write_net(path, layers: list[dict], meta: dict | None = None) -> None:
    average = np.ones((8, 8, 3), np.float32) * np.array(AVERAGE_RGB, np.float32)  # a constant mean image
    meta = {"normalization": {"averageImage": average, "imageSize": np.array([[224, 224, 3]], float)},
            "sessionID": "vd16_pitts30k_conv5_3_vlad_preL2_intra_white"} if meta is None else meta
    scipy.io.savemat(str(path), {"net": {"layers": cell(*layers), "meta": meta}})


# --- an independent float64 MatConvNet forward pass, in MATLAB's H×W×C layout -------------------------------

def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    """vl_nnconv: correlation, y(i,j,o) = b(o) + Σ w(u,v,c,o) x(i+u−pad, j+v−pad, c)."""
    kh, kw = w.shape[:2]
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    h, wd = xp.shape[0] - kh + 1, xp.shape[1] - kw + 1
    y = np.zeros((h, wd, w.shape[3])) + b.reshape(-1)
    for u in range(kh):
        for v in range(kw):
            y += np.tensordot(xp[u:u + h, v:v + wd], w[u, v], axes=([2], [0]))
    return y


def _normalize(x: np.ndarray, param) -> np.ndarray:
    n, kappa, alpha, beta = np.ravel(param)
    assert n >= x.shape[2]  # the window covers every channel: an L2 normalisation
    return x * (kappa + alpha * (x**2).sum(axis=2, keepdims=True)) ** -beta


def _vlad(x: np.ndarray, weights) -> np.ndarray:
    """layerVLAD(v2).forward_: softmax(conv) assignment, y(1, k, :) = Σ a_k (x + offset_k)."""
    w = weights[0, 0].astype(np.float64)
    logits = np.tensordot(x, w[0, 0], axes=([2], [0]))
    if weights.shape[1] == 3:
        logits = logits + weights[0, 1].astype(np.float64).reshape(-1)
    a = np.exp(logits - logits.max(2, keepdims=True))
    a /= a.sum(2, keepdims=True)
    offsets = weights[0, -1].astype(np.float64)[0, 0]
    y = np.zeros((1, w.shape[3], w.shape[2]))
    for k in range(w.shape[3]):
        y[0, k, :] = (a[:, :, k:k + 1] * (x + offsets[:, k])).sum((0, 1))
    return y


def matconvnet_forward(layers: list[dict], image: np.ndarray) -> np.ndarray:
    """Descriptor of one RGB image (H, W, 3) in 0–255, by the simplenn layer semantics."""
    x = image.astype(np.float64) - np.array(AVERAGE_RGB, np.float32).astype(np.float64)
    for layer in layers:
        kind, name = layer["type"], layer["name"]
        if kind == "conv" and x.ndim == 3 and name != "WPCA":
            x = _conv(x, layer["weights"][0, 0].astype(np.float64), layer["weights"][0, 1], 1)
        elif kind == "conv":  # WPCA on the 1×1×(K·D) vector
            x = (x.reshape(-1) @ layer["weights"][0, 0].astype(np.float64)[0, 0]
                 + layer["weights"][0, 1].astype(np.float64).reshape(-1)).reshape(1, 1, -1)
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "pool":
            h, w, c = x.shape
            x = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c).max((1, 3))
        elif kind == "normalize":
            x = _normalize(x, layer["param"])
        elif name == "vlad:core":
            x = _vlad(x, layer["weights"])
        else:  # layerWholeL2Normalize: reshape(x, [], 1) is column-major
            v = x.reshape(-1, order="F")
            x = (v / np.sqrt((v**2).sum())).reshape(1, 1, -1)
    return x.reshape(-1)


@pytest.fixture(scope="module")
def backbone_layers() -> list[dict]:
    return vgg16_layers(np.random.default_rng(0))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.fixture(scope="module", params=[(False, True), (True, False)], ids=["vlad-white", "vladv2-raw"])
def converted(request, tmp_path_factory, backbone_layers):
    """(layers, path, conversion) of a published-layout network: layerVLAD + WPCA, or layerVLADv2 alone."""
    vladv2, whiten = request.param
    layers = backbone_layers + netvlad_layers(np.random.default_rng(2), vladv2, whiten)
    path = tmp_path_factory.mktemp("matlab") / "net.mat"
    write_net(path, layers)
    assert detect_format(path) == "matlab"
    return layers, path, convert(path)


def test_matlab_descriptors_equal_matconvnet(converted, images):
    layers, _, conversion = converted
    vladv2 = next(layer for layer in layers if layer["name"] == "vlad:core")["weights"].shape[1] == 3
    whiten = layers[-1]["name"] == "finalL2"
    model = conversion.model.double()
    assert model.config.preprocessing.value_scale == 255.0
    assert model.config.preprocessing.mean == pytest.approx(AVERAGE_RGB, abs=1e-4)
    assert model.config.whitening_dim == (PCS if whiten else None)
    with torch.no_grad():
        ours = model(images).numpy()
    reference = np.stack([matconvnet_forward(layers, (img.permute(1, 2, 0) * 255).numpy()) for img in images])
    if not whiten:  # MATLAB's raw VLAD is D-major (j·K + k); ours is the same vector, cluster-major (k·D + j)
        reference = reference.reshape(-1, 512, K).transpose(0, 2, 1).reshape(-1, K * 512)
    assert ours.shape == (2, PCS if whiten else K * 512)
    np.testing.assert_allclose(ours, reference, atol=1e-6, rtol=0)
    assert np.abs(reference[0] - reference[1]).max() > 1e-3  # the two images give different descriptors
    assert model.config.netvlad_bias is vladv2


def test_float32_model_stays_close(converted, images):
    layers, _, conversion = converted
    with torch.no_grad():
        ours = conversion.model.float()(images.float()).double().numpy()
        exact = conversion.model.double()(images).numpy()
    conversion.model.float()
    np.testing.assert_allclose(ours, exact, atol=1e-5, rtol=0)


def test_whitening_eigenvalues_and_no_whitening_option(converted):
    layers, path, conversion = converted
    if layers[-1]["name"] != "finalL2":
        assert conversion.model.whitening is None and conversion.model.output_dim == K * 512
        return
    pca = layers[-2]["weights"][0, 0].astype(np.float64)[0, 0]  # (K·D) × P; column p = u_p / √λ_p
    expected = 1.0 / (pca**2).sum(0) - 1e-9
    np.testing.assert_allclose(conversion.model.whitening.eigenvalues.numpy(), expected, rtol=1e-5)
    origin = conversion.provenance["converted_from"]
    assert origin["format"] == "matlab" and origin["file"] == "net.mat" and len(origin["sha256"]) == 64
    without = convert(path, options=ConvertOptions(whitening=False)).model
    assert without.whitening is None and without.output_dim == K * 512


# --- wrong structures: small nets, since every check happens before any weight is used ----------------------

def tiny_backbone(convs: int = 13) -> list[dict]:
    rng = np.random.default_rng(7)
    return [{"type": "conv", "name": f"conv{i}", "weights": cell(rng.standard_normal((3, 3, 2, 2)).astype(
        np.float32), np.zeros((2, 1), np.float32)), "pad": 1.0} for i in range(convs)]


def _without(layers, index, field):
    layers = [dict(layer) for layer in layers]
    del layers[index][field]
    return layers


@pytest.mark.parametrize("mutate,message", [
    (lambda b, v: _without(b + v, len(b) + 1, "weights"), r"net.layers\{15\} has no field 'weights'"),
    (lambda b, v: _without(b + v, 0, "type"), r"net.layers\{1\} has no field 'type'"),
    (lambda b, v: b[2:] + v, "only VGG16"),
    (lambda b, v: b + v[:1] + v[2:], "postL2.*before any NetVLAD layer"),
    (lambda b, v: b + v[:2] + v[3:], "lacks intra-normalisation"),
    (lambda b, v: b + v[:-1], "lacks the L2 normalisation after whitening"),
    (lambda b, v: b + [{"type": "softmax", "name": "prob"}] + v, "unsupported type 'softmax'"),
    (lambda b, v: b[:1] + [{"type": "pool", "name": "pool1", "method": "avg"}] + b[1:] + v, "method is"),
    (lambda b, v: [{**b[0], "pad": 0.0}] + b[1:] + v, r"conv0\).pad is"),
])
def test_wrong_structure_names_the_problem(tmp_path, mutate, message):
    write_net(tmp_path / "bad.mat", mutate(tiny_backbone(), netvlad_layers(np.random.default_rng(5), False, True)))
    with pytest.raises(ValueError, match=message):
        convert(tmp_path / "bad.mat", "matlab")


def test_missing_average_image_is_named(tmp_path):
    write_net(tmp_path / "bad.mat", tiny_backbone() + netvlad_layers(np.random.default_rng(6), False, False),
              meta={"normalization": {"imageSize": np.array([[224, 224, 3]], float)}})
    with pytest.raises(ValueError, match="net.meta.normalization has no field 'averageImage'"):
        convert(tmp_path / "bad.mat")


def test_missing_net_variable_and_v73_files(tmp_path):
    scipy.io.savemat(str(tmp_path / "other.mat"), {"model": np.zeros(3)})
    with pytest.raises(ValueError, match="no variable 'net'"):
        convert(tmp_path / "other.mat")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 ."
    (tmp_path / "v73.mat").write_bytes(header.ljust(124, b" ") + b"\x00\x02IM" + b"\x00" * 384)
    with pytest.raises(ValueError, match="v7.3"):
        convert(tmp_path / "v73.mat")


def test_class_object_layers_explain_the_struct_conversion(tmp_path):
    """The original release stores layerVLAD as a MATLAB object; scipy reads it as an opaque blob."""
    from scipy.io.matlab import MatlabOpaque, mat_struct

    from netvlad.models.converters.matlab import parse_layers

    blob = MatlabOpaque(np.zeros(1, dtype=[("s0", "O"), ("s1", "O"), ("s2", "O"), ("arr", "O")]))
    net = mat_struct()
    net._fieldnames, net.layers = ["layers"], cell(blob)
    with pytest.raises(ValueError, match=r"net.layers\{1\} is a MATLAB class object .* struct\(net.layers\{i\}\)"):
        parse_layers(net, tmp_path / "vd16_pitts30k_conv5_3_vlad_preL2_intra_white.mat")
