"""The torch engine on a CPU: a folded channels_last copy run in chunks of a pixel budget, with the model's own
descriptors, the same bits from run to run, and the model's current weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from netvlad.data.images import load_image
from netvlad.extract import engine as engine_module
from netvlad.extract.descriptors import extract_descriptors
from netvlad.extract.engine import TorchRunner
from netvlad.models import ModelConfig, PlaceModel, Preprocessing

SIZE = (120, 160)


@pytest.fixture
def paths(gardens_point):
    """Six real Gardens Point frames, both sides of the route."""
    return [gardens_point / side / f"Image{i:03d}.jpg" for side in ("day_left", "day_right") for i in (0, 60, 150)]


@pytest.fixture
def model() -> PlaceModel:
    """MobileNetV2 with its ImageNet weights and NetVLAD (K = 8), as the commands build it."""
    config = ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=8,
                         preprocessing=Preprocessing("fixed", SIZE))
    return PlaceModel(config, pretrained=True).eval()


def cpu_runner(model: PlaceModel) -> TorchRunner:
    return TorchRunner(model, torch.device("cpu"))


def test_the_cpu_path_gives_the_model_s_descriptors_on_real_photos(model, paths, one_thread):
    images = torch.stack([load_image(path, "fixed", SIZE) for path in paths])
    with torch.inference_mode():
        expected = model(images).numpy()  # the model as built: NCHW, batch norms separate, one batched call
    got = cpu_runner(model)(images)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-5
    prepared = cpu_runner(model).inference_model()
    assert not any(isinstance(module, nn.BatchNorm2d) for module in prepared.modules())
    assert prepared.pool.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert any(isinstance(module, nn.BatchNorm2d) for module in model.modules())  # the caller's model untouched
    assert model.pool.conv.weight.is_contiguous()


def test_descriptors_are_the_same_bits_run_to_run(model, paths, one_thread):
    first = extract_descriptors(model, paths, batch_size=4, engine="torch")
    engine_module._PREPARED.clear()  # a second run folds again
    assert np.array_equal(first, extract_descriptors(model, paths, batch_size=4, engine="torch"))
    singles = extract_descriptors(model, paths, batch_size=1, engine="torch")
    assert np.abs(singles - first).max() <= 1e-6  # other chunks, other rounding only


def test_a_batch_runs_in_chunks_of_the_pixel_budget(model, paths, one_thread):
    """120 × 160 = 19,200 pixels: 16 images a call at the default budget; a chunk's descriptors are its own call's."""
    images = torch.stack([load_image(path, "fixed", SIZE) for path in paths])
    calls = []
    runner = TorchRunner(model, torch.device("cpu"), cpu_pixels=2 * SIZE[0] * SIZE[1] + 1)
    prepared = runner.inference_model()
    handle = prepared.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    got = runner(images)
    handle.remove()
    assert calls == [2, 2, 2]
    assert np.array_equal(got[2:4], runner(images[2:4]))
    assert engine_module.CPU_BATCH_PIXELS // (SIZE[0] * SIZE[1]) == 16
    assert engine_module.CPU_BATCH_PIXELS // (480 * 640) == 1  # one image a call from 480 × 640 up


def test_the_copy_follows_the_model_s_weights(model, paths, one_thread):
    images = torch.stack([load_image(path, "fixed", SIZE) for path in paths[:2]])
    runner = cpu_runner(model)
    before = runner(images)
    with torch.no_grad():  # as an optimiser step does: in place
        for parameter in model.backbone.stages[-1].parameters():
            parameter.mul_(1.5)
    with torch.inference_mode():
        expected = model(images).numpy()
    after = runner(images)
    assert np.abs(after - before).max() > 1e-3
    assert np.abs(after - expected).max() <= 1e-5


def test_a_model_in_training_mode_runs_as_it_is(model, paths, one_thread):
    model.train()
    runner = cpu_runner(model)
    assert runner.inference_model() is model
    model.eval()
    assert runner.inference_model() is not model
