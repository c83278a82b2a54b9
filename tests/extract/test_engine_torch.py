"""The torch engine on a CPU: a folded, channels_last, traced copy run in chunks of a pixel budget, with the model's
own descriptors, the same bits from run to run and in any batch (padded), and the model's current weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from netvlad.data.images import load_image
from netvlad.extract import engine as engine_module
from netvlad.extract.descriptors import extract_descriptors
from netvlad.extract.engine import TorchRunner, cpu_chunk, in_chunks
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
    assert np.array_equal(singles, first)  # every call padded to one chunk's shape: the batch changes no bit


def test_the_chunk_rule_is_the_pixel_budget():
    """One rule cuts every CPU batch: as many images as fit in CPU_BATCH_PIXELS, at most CPU_BATCH_IMAGES, one at
    least."""
    budget, most = engine_module.CPU_BATCH_PIXELS, engine_module.CPU_BATCH_IMAGES
    assert cpu_chunk(240, 320) == min(most, budget // (240 * 320))
    assert cpu_chunk(*SIZE) == most  # 16 fit: capped at the commands' default batch size
    assert cpu_chunk(4000, 3000) == 1
    assert cpu_chunk(10, 10, pixels=250) == 2 and cpu_chunk(10, 10, pixels=99) == 1 and cpu_chunk(1, 1, most=3) == 3


@pytest.mark.parametrize("pad", [False, True])
def test_in_chunks_cuts_a_batch_by_the_step_and_pads_to_one_shape(pad):
    shapes = []

    def call(chunk):
        shapes.append(tuple(chunk.shape))
        return np.asarray(chunk).reshape(len(chunk), -1).sum(1, keepdims=True) + 1.0

    images = torch.arange(7 * 2, dtype=torch.float32).reshape(7, 1, 2, 1)
    got = in_chunks(call, images, 3, pad=pad)
    assert np.array_equal(got, images.reshape(7, -1).sum(1, keepdim=True).numpy() + 1.0)
    assert shapes == [(3, 1, 2, 1), (3, 1, 2, 1), (3 if pad else 1, 1, 2, 1)]
    assert np.array_equal(in_chunks(call, images.numpy(), 3, pad=pad), got)  # numpy arrays as onnxruntime's


def test_the_runner_cuts_by_the_rule_and_a_padded_row_has_the_same_bits_in_any_batch(model, paths):
    """Two threads, where the kernels' rounding follows the batch's shape: a padded runner gives an image the same
    bytes alone as in any batch, and the runner's calls are the rule's chunks."""
    images = torch.stack([load_image(path, "fixed", SIZE) for path in paths])
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        padded = TorchRunner(model, torch.device("cpu"), chunk=4).padded()
        whole = padded(images)
        assert np.array_equal(padded(images[4:5]), whole[4:5])
        assert np.array_equal(padded(images[3:6]), whole[3:6])
        calls = []
        runner = TorchRunner(model, torch.device("cpu"), trace=False)
        handle = runner.inference_model().register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
        runner(torch.cat([images] * 3))
        handle.remove()
    finally:
        torch.set_num_threads(threads)
    step = cpu_chunk(*SIZE)
    assert calls == [min(step, 18 - first) for first in range(0, 18, step)]


def test_the_traced_path_is_the_eager_model_on_real_photos(model, paths, one_thread):
    """TorchScript's traced, frozen, optimised copy: within 1e-5 of the model as built, at batch 1 and in chunks."""
    images = torch.stack([load_image(path, "fixed", SIZE) for path in paths])
    with torch.inference_mode():
        expected = model(images).numpy()
    runner = TorchRunner(model, torch.device("cpu"), chunk=1)
    got = runner(images)
    example = images[:1].contiguous(memory_format=torch.channels_last)
    assert isinstance(runner.inference_model((1, 3, *SIZE), example), torch.jit.ScriptModule)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.abs(TorchRunner(model, torch.device("cpu"), chunk=4)(images) - expected).max() <= 1e-5


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
