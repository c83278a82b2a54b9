"""hubconf.py: torch.hub.load(repo, "netvlad", ..., source="local") returns ready PlaceModels."""

from __future__ import annotations

import pytest
import torch

from netvlad.errors import BadInputError
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
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


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"num_clusters": 0}, r"num_clusters must be an integer in \[1, 4096\], got 0"),
    ({"num_clusters": -5}, r"num_clusters must be an integer in \[1, 4096\], got -5"),
    ({"num_clusters": 2.5}, "num_clusters must be an integer"),
    ({"whitening_dim": 0}, "whitening_dim must be an integer ≥ 1"),
    ({"preprocessing": {"resize": "fixed", "size": [48]}}, r"resize='fixed' needs size=\(height, width\)"),
    ({"preprocessing": {"resize": "fixed", "colour": 1}}, "preprocessing: .*colour.*; its keys are"),
    ({"preprocessing": "fixed"}, "preprocessing must be a Preprocessing or a dict"),
    ({"clusters": 8}, "unknown model config keys \\['clusters'\\]"),
    ({"pretrained": 1}, "pretrained must be True, False or a published model name"),
])
def test_hub_arguments_are_checked_in_one_line(kwargs, words):
    with pytest.raises(BadInputError, match=words) as error:
        _hub(pool="netvlad", **kwargs)
    assert "\n" not in str(error.value)


def test_hub_accepts_preprocessing_as_a_dict():
    model = _hub(pool="netvlad", num_clusters=4, pretrained=False,
                 preprocessing={"resize": "fixed", "size": [48, 64]})
    assert model.config.preprocessing == Preprocessing("fixed", (48, 64)) and model.config.num_clusters == 4
