"""pytorch-NetVlad and Patch-NetVLAD checkpoints -> our model: same descriptors as their forward pass (float64)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from netvlad.models.converters import ConvertOptions, convert, detect_format, load_torch_checkpoint

# torchvision's features[:-2] as (kind, index, kernel, stride, padding): what encoder.<index> holds.
ENCODERS = {
    "alexnet": [("conv", 0, (3, 64), 11, 4, 2), ("relu",), ("pool", 3, 2), ("conv", 3, (64, 192), 5, 1, 2), ("relu",),
                ("pool", 3, 2), ("conv", 6, (192, 384), 3, 1, 1), ("relu",), ("conv", 8, (384, 256), 3, 1, 1),
                ("relu",), ("conv", 10, (256, 256), 3, 1, 1)],
}
_VGG = [[(3, 64), (64, 64)], [(64, 128), (128, 128)], [(128, 256), (256, 256), (256, 256)],
        [(256, 512), (512, 512), (512, 512)], [(512, 512), (512, 512), (512, 512)]]


def _vgg16_plan() -> list[tuple]:
    plan, index = [], 0
    for b, block in enumerate(_VGG):
        for c, channels in enumerate(block):
            plan.append(("conv", index, channels, 3, 1, 1))
            index += 1
            if not (b == 4 and c == len(block) - 1):
                plan.append(("relu",))
                index += 1
        if b < 4:
            plan.append(("pool", 2, 2))
            index += 1
    return plan


ENCODERS["vgg16"] = _vgg16_plan()


def make_state(encoder: str, k: int, vladv2: bool, pcs: int | None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under exactly the keys their training scripts save."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for step in ENCODERS[encoder]:
        if step[0] == "conv":
            _, index, (cin, cout), size, _, _ = step
            scale = (2 / (cin * size**2)) ** 0.5
            state[f"encoder.{index}.weight"] = torch.randn(cout, cin, size, size, generator=g) * scale
            state[f"encoder.{index}.bias"] = 0.01 * torch.randn(cout, generator=g)
    dim = 512 if encoder == "vgg16" else 256
    centroids = F.normalize(torch.randn(k, dim, generator=g), dim=1)
    state["pool.conv.weight"] = (8 * centroids + 0.5 * torch.randn(k, dim, generator=g))[:, :, None, None]
    if vladv2:
        state["pool.conv.bias"] = torch.randn(k, generator=g)
    state["pool.centroids"] = centroids
    if pcs:
        state["WPCA.0.weight"] = torch.randn(pcs, k * dim, 1, 1, generator=g)
        state["WPCA.0.bias"] = 0.01 * torch.randn(pcs, generator=g)
    return state


def nanne_checkpoint(state: dict, parallel: bool = False) -> dict:
    """pytorch-NetVlad's save_checkpoint dict; recalls/best_score are numpy float64 as its test() makes them."""
    if parallel:  # nn.DataParallel on model.encoder and model.pool
        state = {k.replace("encoder.", "encoder.module.", 1).replace("pool.", "pool.module.", 1): v
                 for k, v in state.items()}
    recalls = {n: np.float64(r) for n, r in ((1, 0.81), (5, 0.9), (10, 0.93), (20, 0.95))}
    return {"epoch": 7, "state_dict": state, "recalls": recalls, "best_score": recalls[5],
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "momentum": 0.9, "params": [0, 1]}]},
            "parallel": parallel}


def reference_forward(state: dict, encoder: str, images: torch.Tensor) -> torch.Tensor:
    """Their forward in float64: ImageNet normalisation, encoder, NetVLAD (loop over clusters), WPCA."""
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    x = (images - mean) / std
    s = {k: v.double() for k, v in state.items()}
    for step in ENCODERS[encoder]:
        if step[0] == "conv":
            _, index, _, _, stride, pad = step
            x = F.conv2d(x, s[f"encoder.{index}.weight"], s[f"encoder.{index}.bias"], stride=stride, padding=pad)
        elif step[0] == "relu":
            x = F.relu(x)
        else:
            x = F.max_pool2d(x, step[1], step[2])
    n, c = x.shape[:2]
    x = F.normalize(x, p=2, dim=1)
    soft = F.softmax(F.conv2d(x, s["pool.conv.weight"], s.get("pool.conv.bias")).view(n, -1, x[0, 0].numel()), 1)
    flat = x.view(n, c, -1)
    centroids = s["pool.centroids"]
    vlad = torch.zeros(n, centroids.shape[0], c, dtype=torch.float64)
    for k in range(centroids.shape[0]):
        residual = flat - centroids[k].view(1, c, 1)
        vlad[:, k] = (residual * soft[:, k:k + 1]).sum(-1)
    vlad = F.normalize(F.normalize(vlad, dim=2).view(n, -1), dim=1)
    if "WPCA.0.weight" in s:
        vlad = F.conv2d(vlad[:, :, None, None], s["WPCA.0.weight"], s["WPCA.0.bias"]).flatten(1)
        vlad = F.normalize(vlad, dim=-1)
    return vlad


def _check(path, state, encoder, images, source):
    assert detect_format(path) == source
    conversion = convert(path)
    assert conversion.provenance["converted_from"]["format"] == source
    with torch.no_grad():
        ours = conversion.model.double()(images)
    expected = reference_forward(state, encoder, images)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
    assert (expected[0] - expected[1]).abs().max() > 1e-3
    return conversion


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.mark.parametrize("vladv2,parallel", [(False, False), (True, True)])
def test_pytorch_netvlad_alexnet_equals_its_forward(tmp_path, images, vladv2, parallel):
    state = make_state("alexnet", k=8, vladv2=vladv2, pcs=None)
    torch.save(nanne_checkpoint(state, parallel), tmp_path / "checkpoint.pth.tar")
    conversion = _check(tmp_path / "checkpoint.pth.tar", state, "alexnet", torch.rand(
        2, 3, 96, 96, generator=torch.Generator().manual_seed(2), dtype=torch.float64), "pytorch-netvlad")
    config = conversion.model.config
    assert (config.backbone, config.num_clusters, config.netvlad_bias) == ("alexnet", 8, vladv2)
    assert conversion.provenance["converted_from"]["best_score"] == pytest.approx(0.9)


def test_pytorch_netvlad_vgg16_equals_its_forward(tmp_path, images):
    state = make_state("vgg16", k=4, vladv2=False, pcs=None)
    torch.save(nanne_checkpoint(state), tmp_path / "model_best.pth.tar")
    conversion = _check(tmp_path / "model_best.pth.tar", state, "vgg16", images, "pytorch-netvlad")
    assert conversion.model.config.parametrization == "official"


def test_patchnetvlad_with_wpca_equals_its_forward(tmp_path, images):
    state = make_state("vgg16", k=4, vladv2=False, pcs=24, seed=3)
    torch.save({"num_pcs": 24, "state_dict": state}, tmp_path / "pittsburgh_WPCA24.pth.tar")
    conversion = _check(tmp_path / "pittsburgh_WPCA24.pth.tar", state, "vgg16", images, "patchnetvlad")
    assert conversion.model.config.whitening_dim == 24
    weight = state["WPCA.0.weight"].flatten(1).double()
    torch.testing.assert_close(conversion.model.whitening.eigenvalues.double(), 1 / weight.pow(2).sum(1) - 1e-9,
                               rtol=1e-5, atol=0)


def test_user_flags_are_checked_against_the_file(tmp_path):
    state = make_state("alexnet", k=8, vladv2=False, pcs=16)
    torch.save({"num_pcs": 16, "state_dict": state}, tmp_path / "p.pth.tar")
    with pytest.raises(ValueError, match="vladv2=True"):
        convert(tmp_path / "p.pth.tar", options=ConvertOptions(vladv2=True))
    with pytest.raises(ValueError, match="K=16 but pool.centroids holds K=8"):
        convert(tmp_path / "p.pth.tar", options=ConvertOptions(num_clusters=16))
    with pytest.raises(ValueError, match="vgg16"):
        convert(tmp_path / "p.pth.tar", options=ConvertOptions(backbone="vgg16"))
    model = convert(tmp_path / "p.pth.tar", "patchnetvlad", ConvertOptions(whitening=False)).model
    assert model.whitening is None and model.output_dim == 8 * 256


@pytest.mark.parametrize("drop,message", [
    ("pool.centroids", "no field 'pool.centroids'"),
    ("pool.conv.weight", "no field 'pool.conv.weight'"),
    ("encoder.8.weight", r"no field 'state_dict\['encoder.8.weight'\]'"),
    ("WPCA.0.bias", "no field 'WPCA.0.bias'"),
])
def test_wrong_structure_names_the_missing_field(tmp_path, drop, message):
    state = make_state("alexnet", k=8, vladv2=False, pcs=16)
    del state[drop]
    torch.save({"num_pcs": 16, "state_dict": state}, tmp_path / "bad.pth.tar")
    with pytest.raises(ValueError, match=message):
        convert(tmp_path / "bad.pth.tar", "patchnetvlad")


def test_checkpoint_without_state_dict_is_named(tmp_path):
    torch.save({"epoch": 1, "weights": [torch.zeros(2)]}, tmp_path / "odd.pth.tar")
    with pytest.raises(ValueError, match="no field 'state_dict'"):
        convert(tmp_path / "odd.pth.tar", "pytorch-netvlad")
    with pytest.raises(ValueError, match="not recognised"):
        detect_format(tmp_path / "odd.pth.tar")


class Payload:
    """A custom class: unpickling it would import and call arbitrary code."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_arbitrary_unpickling_is_refused(tmp_path, capsys):
    torch.save({"state_dict": make_state("alexnet", 2, False, None), "extra": Payload()}, tmp_path / "evil.pth.tar")
    with pytest.raises(ValueError, match="refusing to load: this checkpoint needs arbitrary unpickling"):
        load_torch_checkpoint(tmp_path / "evil.pth.tar")
    with pytest.raises(ValueError, match="arbitrary unpickling"):
        convert(tmp_path / "evil.pth.tar", "pytorch-netvlad")
    (tmp_path / "legacy.pkl").write_bytes(pickle.dumps({"state_dict": {}, "x": Payload()}, protocol=2))
    with pytest.raises(ValueError, match="refusing to load: this checkpoint needs arbitrary unpickling"):
        load_torch_checkpoint(tmp_path / "legacy.pkl")
    assert "must never run" not in capsys.readouterr().out


def test_numpy_scalars_of_real_checkpoints_load(tmp_path):
    torch.save(nanne_checkpoint(make_state("alexnet", 2, False, None)), tmp_path / "c.pth.tar")
    checkpoint = load_torch_checkpoint(tmp_path / "c.pth.tar")
    assert checkpoint["best_score"] == pytest.approx(0.9) and checkpoint["recalls"][20] == pytest.approx(0.95)
