"""PlaceModel: shapes, save → load bit-identical, refusal of foreign or corrupt files, real-photo recall."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import netvlad
from netvlad.errors import BadInputError
from netvlad.extract.clusters import init_from_descriptors
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
from netvlad.nn import PCAWhitening


@pytest.mark.parametrize("pool", ["netvlad", "gem", "max", "avg"])
def test_output_dim_and_unit_norm(pool):
    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool=pool, num_clusters=8), pretrained=False).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 96, 128))
    assert out.shape == (2, model.output_dim)
    assert model.output_dim == (8 * 1280 if pool == "netvlad" else 1280)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_save_load_is_bit_identical(tmp_path):
    config = ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=4, parametrization="paper",
                         preprocessing=Preprocessing(resize="fixed", size=(96, 128)))
    model = PlaceModel(config, pretrained=False).eval()
    init_from_descriptors(model.pool, torch.randn(200, 1280))
    white = PCAWhitening(model.pool.output_dim, 16).fit(torch.randn(40, model.pool.output_dim))
    model.set_whitening(white)
    images = torch.rand(2, 3, 96, 128)
    path = tmp_path / "model.safetensors"
    save_model(model, path)
    loaded = netvlad.load(path)
    assert loaded.config == model.config and loaded.config.whitening_dim == 16
    with torch.inference_mode():
        assert torch.equal(model(images), loaded(images))
    assert loaded.fingerprint() == model.fingerprint()
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_load_refuses_foreign_and_corrupt_files(tmp_path):
    foreign = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(BadInputError, match="not a netvlad checkpoint.*netvlad.models.converters.convert") as caught:
        netvlad.load(foreign)
    assert caught.value.path == foreign and "netvlad convert" in caught.value.hint  # the CLI's wording
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ValueError, match="corrupt.safetensors: not a netvlad checkpoint"):
        netvlad.load(corrupt)
    pickled = tmp_path / "model.pth"
    pickled.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="model.pth: not a netvlad checkpoint"):
        netvlad.load(pickled)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        netvlad.load(tmp_path / "missing.safetensors")


def test_load_refuses_nan_weights_and_configs_out_of_range(tmp_path):
    model = PlaceModel(ModelConfig(pool="netvlad", num_clusters=4, preprocessing=Preprocessing("fixed", (32, 32))),
                       pretrained=False)
    with torch.no_grad():
        model.pool.centroids[1, 3] = float("nan")
    path = save_model(model, tmp_path / "diverged.safetensors")
    with pytest.raises(BadInputError, match=r"diverged.safetensors: tensor pool.centroids holds NaN or inf"):
        netvlad.load(path)
    for kwargs, words in (({"num_clusters": 0}, r"num_clusters must be an integer in \[1, 4096\]"),
                          ({"whitening_dim": -1}, "whitening_dim must be an integer ≥ 1"),
                          ({"preprocessing": [1, 2]}, "preprocessing must be a Preprocessing or a dict")):
        with pytest.raises(BadInputError, match=words):
            ModelConfig(**kwargs)


def test_unknown_config_key_is_an_error():
    with pytest.raises(ValueError, match="unknown model config keys \\['clusters'\\]"):
        ModelConfig.from_dict({"clusters": 3})


def _load_sequence(folder, size=(135, 240)):
    from netvlad.data.images import load_image

    return torch.stack([load_image(folder / f"Image{i:03d}.jpg", "fixed", size) for i in range(200)])


@pytest.mark.slow
def test_pretrained_gem_recall_on_gardens_point(gardens_point):
    """Offline ImageNet MobileNetV2 + GeM reaches Recall@5 ≥ 90 % (±2 frames) at a quarter of the photos' 540 × 960
    pixels (99.0 %; 98.5 % at half); random weights do not (4.5 % at either size)."""
    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="gem"), pretrained=True).eval()
    with torch.inference_mode():
        db = torch.cat([model(b) for b in _load_sequence(gardens_point / "day_left").split(25)])
        q = torch.cat([model(b) for b in _load_sequence(gardens_point / "day_right").split(25)])
    top5 = torch.cdist(q, db).topk(5, largest=False).indices.numpy()
    correct = np.abs(top5 - np.arange(200)[:, None]) <= 2
    recall5 = 100 * correct.any(1).mean()
    assert recall5 >= 90, f"Recall@5 {recall5:.1f} %: the pretrained weights did not load"


def test_fingerprint_hashes_the_tensor_bytes_in_place_as_before():
    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=4), pretrained=False)
    digest = hashlib.sha256(model.config.to_json().encode())  # the previous recipe: a bytes copy of every tensor
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    assert model.fingerprint() == digest.hexdigest()[:16]


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_normalize_skips_a_unit_value_scale_bit_for_bit(scale):
    pre = Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), value_scale=scale)
    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="gem", preprocessing=pre), pretrained=False)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor(pre.mean).view(1, 3, 1, 1), torch.tensor(pre.std).view(1, 3, 1, 1)
    assert torch.equal(model.normalize(images), (images * scale - mean) / std)
