"""``netvlad convert``'s claim end to end: a converted MATLAB, pytorch-NetVlad or Patch-NetVLAD model, fed real
Gardens Point JPEGs by the library's own extraction path, gives the descriptors of the source's pipeline — a full
decode, torchvision's ``Resize`` (PIL's antialiased bilinear resize), ``ToTensor`` — written out here with PIL and
torch, then the source's forward pass (the float64 references of the converter tests)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from netvlad.cli.main import main
from netvlad.extract.descriptors import iter_descriptors
from netvlad.models import load
from tests.conftest import shared_dataset
from tests.models.test_convert_matlab import matconvnet_forward, netvlad_layers, vgg16_layers, write_net
from tests.models.test_convert_pytorch import make_state, nanne_checkpoint, reference_forward

SIZE = (48, 64)  # (height, width): a 960×540 JPEG shrinks 15×, where a reduced-scale decode would change pixels
FRAMES = ("Image000.jpg", "Image080.jpg", "Image160.jpg")


def reference_pixels(path) -> np.ndarray:
    """torchvision's Resize((H, W)) + ToTensor on a fully decoded RGB image: (H, W, 3) float64 in [0, 1]."""
    with Image.open(path) as image:
        resized = image.convert("RGB").resize(SIZE[::-1], Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64) / 255.0


def ours(checkpoint, paths) -> np.ndarray:
    """Descriptors of the converted checkpoint through the library's extraction path, at the same fixed size."""
    model = load(checkpoint)
    pre = dataclasses.replace(model.config.preprocessing, resize="fixed", size=SIZE)
    model.config = dataclasses.replace(model.config, preprocessing=pre)
    out = np.zeros((len(paths), model.output_dim), np.float32)
    for indices, descriptors, _ in iter_descriptors(model.eval(), paths, batch_size=2):
        out[indices] = descriptors
    return out


@pytest.fixture(scope="module")
def frames():
    root = shared_dataset("gardens_point") / "day_left"
    return [root / name for name in FRAMES]


def _convert(source, tmp_path):
    out = tmp_path / "converted.safetensors"
    assert main(["-q", "convert", str(source), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("source", ["pytorch-netvlad", "patchnetvlad"])
def test_converted_torch_models_equal_their_pipeline_on_jpegs(frames, tmp_path, source):
    if source == "pytorch-netvlad":
        state, encoder = make_state("alexnet", k=8, vladv2=True, pcs=None), "alexnet"
        torch.save(nanne_checkpoint(state), tmp_path / "checkpoint.pth.tar")
        path = tmp_path / "checkpoint.pth.tar"
    else:
        state, encoder = make_state("vgg16", k=4, vladv2=False, pcs=24, seed=3), "vgg16"
        torch.save({"num_pcs": 24, "state_dict": state}, tmp_path / "pittsburgh_WPCA24.pth.tar")
        path = tmp_path / "pittsburgh_WPCA24.pth.tar"
    got = ours(_convert(path, tmp_path), frames)
    pixels = torch.from_numpy(np.stack([reference_pixels(p) for p in frames])).permute(0, 3, 1, 2)
    expected = reference_forward(state, encoder, pixels).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert np.abs(expected[0] - expected[1]).max() > 1e-3  # different frames, different descriptors


def test_converted_matlab_model_equals_matconvnet_on_jpegs(frames, tmp_path):
    layers = vgg16_layers(np.random.default_rng(0)) + netvlad_layers(np.random.default_rng(2), False, True)
    write_net(tmp_path / "net.mat", layers)
    got = ours(_convert(tmp_path / "net.mat", tmp_path), frames)
    expected = np.stack([matconvnet_forward(layers, reference_pixels(p) * 255.0) for p in frames])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert np.abs(expected[0] - expected[1]).max() > 1e-3
