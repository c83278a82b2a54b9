"""hubconf.py: torch.hub.load(repo, "netvlad", ..., source="local") returns ready PlaceModels."""

from __future__ import annotations

import pytest
import torch

from netvlad.errors import BadInputError
from netvlad.models import ModelConfig, PlaceModel, save_model
from tests.conftest import REPO


def _hub(**kwargs):
    return torch.hub.load(str(REPO), "netvlad", source="local", **kwargs)


def test_hub_builds_the_configured_model_with_imagenet_weights():
    torch.manual_seed(0)
    model = _hub(backbone="mobilenet_v2", pool="gem", pretrained=True)
    reference = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="gem"), pretrained=True).eval()
    images = torch.rand(2, 3, 64, 80)
    assert isinstance(model, PlaceModel) and not model.training
    assert model.config == reference.config and model.output_dim == 1280
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images))


def test_hub_loads_a_checkpoint_path(tmp_path):
    torch.manual_seed(0)
    saved = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=4), pretrained=False).eval()
    path = save_model(saved, tmp_path / "model.safetensors")
    model = _hub(checkpoint=str(path))
    images = torch.rand(1, 3, 48, 64)
    assert model.config == saved.config and not model.training
    with torch.no_grad():
        torch.testing.assert_close(model(images), saved(images))


def test_hub_refuses_architecture_arguments_beside_a_checkpoint(tmp_path):
    with pytest.raises(BadInputError, match="drop backbone"):
        _hub(checkpoint=str(tmp_path / "model.safetensors"), backbone="vgg16")
    assert "vgg16-netvlad-pitts30k" in torch.hub.load(str(REPO), "list_pretrained", source="local")
