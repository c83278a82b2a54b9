"""Eval batch norms folded into the convolutions: the same descriptors on real photos, the caller's model untouched."""

from __future__ import annotations

import torch
from torch import nn

from netvlad.data.images import load_image
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.models.folding import fold_batch_norms


def frames(gardens_point, size=(120, 160)) -> torch.Tensor:
    """Four real Gardens Point frames (day and night sides of the route), resized to ``size``."""
    paths = [gardens_point / side / f"Image{i:03d}.jpg" for side in ("day_left", "day_right") for i in (0, 120)]
    return torch.stack([load_image(path, "fixed", size) for path in paths])


def batch_norms(model: nn.Module) -> int:
    return sum(isinstance(module, nn.BatchNorm2d) for module in model.modules())


def test_folded_imagenet_mobilenet_gives_the_same_descriptors_on_real_photos(gardens_point, one_thread):
    for pool in ("netvlad", "gem"):
        config = ModelConfig(backbone="mobilenet_v2", pool=pool, num_clusters=8,
                             preprocessing=Preprocessing("fixed", (120, 160)))
        model = PlaceModel(config, pretrained=True).eval()
        images = frames(gardens_point)
        folded = fold_batch_norms(model)
        assert batch_norms(model) == 52 and batch_norms(folded) == 0  # all folded, the caller's model untouched
        with torch.inference_mode():
            expected, got = model(images), folded(images)
            local = (model.features(images) - folded.features(images)).abs().max().item()
        assert (got - expected).abs().max().item() <= 1e-5
        assert local <= 1e-4 * model.features(images).abs().max().item()  # local features, relative to their scale
        assert not torch.equal(got, expected)  # a folded model, not the same one


def test_folding_uses_the_running_statistics_of_every_batch_norm(gardens_point, one_thread):
    """ResNet's batch norms with non-trivial statistics (random weights would leave them at mean 0, variance 1)."""
    config = ModelConfig(backbone="resnet18_layer3", pool="gem", preprocessing=Preprocessing("fixed", (120, 160)))
    model = PlaceModel(config, pretrained=False).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                channels = module.num_features
                module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(channels, generator=generator) * 0.1)
    folded = fold_batch_norms(model)
    assert batch_norms(folded) == 0
    images = frames(gardens_point)
    with torch.inference_mode():
        assert (folded(images) - model(images)).abs().max().item() <= 1e-5


class _DataDependent(nn.Module):
    """Control flow on tensor values: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x)) if x.sum() > 0 else x


def test_an_untraceable_module_is_returned_unfolded_and_computes_the_same():
    module = _DataDependent().eval()
    folded = fold_batch_norms(module)
    assert folded is not module and batch_norms(folded) == 1
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(folded(images), module(images))
