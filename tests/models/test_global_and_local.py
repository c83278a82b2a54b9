"""GlobalAndLocal: the place model's descriptors and the feature maps of its first backbone stages from one pass, on
real photos; the ONNX export with the feature maps computes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netvlad.data.images import load_image
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.models.export import _exportable, export_onnx
from netvlad.models.folding import fold_batch_norms
from netvlad.models.global_and_local import GlobalAndLocal

SIZE = (120, 160)


def frames(gardens_point) -> torch.Tensor:
    """Four real Gardens Point frames (day_left and day_right, two places), resized to ``SIZE``."""
    paths = [gardens_point / side / f"Image{i:03d}.jpg" for side in ("day_left", "day_right") for i in (0, 120)]
    return torch.stack([load_image(path, "fixed", SIZE) for path in paths])


def model_of(backbone: str, pool: str = "netvlad") -> PlaceModel:
    """MobileNetV2 with its ImageNet weights (the one set available offline); another backbone seeded at random."""
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone, pool=pool, num_clusters=8, preprocessing=Preprocessing("fixed", SIZE))
    return PlaceModel(config, pretrained=backbone == "mobilenet_v2").eval()


@pytest.mark.parametrize(("backbone", "cuts"), [("mobilenet_v2", range(1, 20)), ("resnet18_layer3", range(1, 8)),
                                               ("alexnet", range(1, 12))])
def test_one_pass_gives_the_model_s_descriptors_and_the_maps_of_its_first_stages(gardens_point, one_thread, backbone,
                                                                                  cuts):
    """At every cut, those before an in-place ReLU included (ResNet after ``bn1``, AlexNet after each convolution):
    the descriptors are the model's own, bit for bit, and the maps those of its first ``cut`` stages run one after
    the other."""
    model, images = model_of(backbone), frames(gardens_point)
    stages = model.backbone.stages
    assert max(cuts) == len(stages)
    with torch.inference_mode():
        expected = model(images)
        for cut in cuts:
            descriptors, maps = GlobalAndLocal(model, cut)(images)
            want = model.normalize(images)
            for stage in list(stages)[:cut]:
                want = stage(want)
            assert torch.equal(descriptors, expected) and torch.equal(maps, want)
    assert maps.shape[1] == model.backbone.spec.channels  # the last cut: the backbone's own output


def test_folding_folds_both_parts_and_keeps_the_outputs(gardens_point, one_thread):
    model, images = model_of("mobilenet_v2"), frames(gardens_point)
    both = GlobalAndLocal(model, 4)
    folded = fold_batch_norms(both)
    def batch_norms(module):
        return sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())

    assert batch_norms(folded.early) == batch_norms(folded.late) == 0  # the two parts the pass runs, both folded
    assert batch_norms(both.early) > 0 and batch_norms(both.late) > 0  # the caller's module untouched
    with torch.inference_mode():
        (descriptors, maps), (got, got_maps) = both(images), folded(images)
    assert (got - descriptors).abs().max() <= 1e-5
    assert (got_maps - maps).abs().max() <= 1e-4 * maps.abs().max()  # feature maps, relative to their scale


@pytest.mark.parametrize("uint8", [False, True])
def test_the_export_with_feature_maps_runs_this_module(gardens_point, one_thread, uint8):
    """The module the ONNX export traces with ``cut``: this one's outputs, bit for bit (``uint8``: on the bytes
    divided by 255)."""
    model, images = model_of("mobilenet_v2", "gem"), frames(gardens_point)
    inputs = torch.round(images * 255).to(torch.uint8) if uint8 else images
    with torch.inference_mode():
        got = _exportable(model, uint8, cut=3)(inputs)
        want = GlobalAndLocal(model, 3)(inputs.float() / 255 if uint8 else inputs)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_the_onnx_export_with_feature_maps_matches_this_module_on_real_photos(gardens_point, one_thread, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model, images = model_of("mobilenet_v2"), frames(gardens_point)
    path = export_onnx(model, tmp_path / "local.onnx", *SIZE, cut=3)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["descriptors", "features"]
    descriptors, maps = session.run(None, {"images": images.numpy()})
    with torch.inference_mode():
        want, want_maps = (t.numpy() for t in GlobalAndLocal(model, 3)(images))
    assert maps.shape == want_maps.shape and np.abs(descriptors - want).max() <= 1e-5
    assert np.abs(maps - want_maps).max() <= 1e-4 * np.abs(want_maps).max()
