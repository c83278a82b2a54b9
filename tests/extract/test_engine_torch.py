"""The torch engine on a CPU: a folded, channels_last, traced copy run one image a call (one trace per image size,
nothing padded), with the model's own descriptors, the same bits from run to run and in any batch, and the model's
current weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from netvlad.data.images import load_image
from netvlad.extract import engine as engine_module
from netvlad.extract.descriptors import extract_descriptors
from netvlad.extract.engine import TorchRunner, in_chunks
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


def test_one_image_a_call_one_trace_per_size_and_today_s_descriptors(model, paths, one_thread):
    """The default CPU policy: every call holds one image (a batch of one is not padded to a chunk), a shape is an
    image size, so a copy keeps one trace per size (at most TRACED_SHAPES); its descriptors are within 1e-5 of the
    padded chunks of 8 and of 4 the engine ran before, and a frame alone is the same bytes as in a batch."""
    assert engine_module.TORCH_CPU_IMAGES == 1
    images = torch.stack([load_image(path, "fixed", SIZE) for path in paths])
    runner = cpu_runner(model)
    calls = []
    handle = runner.inference_model().register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    try:
        runner.trace = False  # the eager copy, so that the hook sees the calls
        runner(images)
        runner(images[:1])
    finally:
        handle.remove()
    assert calls == [1] * 7
    runner = cpu_runner(model).padded()
    got = runner(images)
    assert np.array_equal(runner(images[2:3]), got[2:3])
    small = torch.nn.functional.interpolate(images[:2], size=(96, 128), mode="bilinear", align_corners=False)
    runner(small)
    traces = next(entry[2] for key, entry in engine_module._PREPARED[model].items() if key[2] is None)
    assert sorted(traces) == [(1, 3, 96, 128), (1, 3, *SIZE)]
    assert all(isinstance(trace, torch.jit.ScriptModule) for trace in traces.values())
    for chunk in (8, 4):  # the chunk rule's padded chunks at 120 × 160 and at 240 × 320
        before = TorchRunner(model, torch.device("cpu"), chunk=chunk).padded()(images)
        assert np.abs(got - before).max() <= 1e-5


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


def test_a_padded_row_has_the_same_bits_in_any_batch_and_the_default_runs_one_image_a_call(model, paths,
                                                                                            two_threads):
    """Two threads, where the kernels' rounding follows the batch's shape: a padded runner of explicit chunks gives
    an image the same bytes alone as in any batch, and the default runner's calls hold one image each."""
    images = torch.stack([load_image(path, "fixed", SIZE) for path in paths])
    padded = TorchRunner(model, torch.device("cpu"), chunk=4).padded()
    whole = padded(images)
    assert np.array_equal(padded(images[4:5]), whole[4:5])
    assert np.array_equal(padded(images[3:6]), whole[3:6])
    calls = []
    runner = TorchRunner(model, torch.device("cpu"), trace=False)
    handle = runner.inference_model().register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    runner(torch.cat([images] * 3))
    handle.remove()
    assert calls == [1] * 18


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


def test_a_runner_with_local_maps_wraps_its_model_once_and_returns_the_model_s_outputs(model, paths, one_thread):
    images = torch.stack([load_image(path, "fixed", SIZE) for path in paths[:2]])
    cut = len(model.backbone.stages) - 1
    model.pool.train()  # a module training: the runner calls the model itself, eagerly, unfolded
    run = cpu_runner(model).with_local(cut)
    wrapper = run.inference_model()
    descriptors, maps = run(images)
    again, _ = run(images)
    assert run.inference_model() is wrapper and run.traced().inference_model() is wrapper  # built once, shared
    assert cpu_runner(model).with_local(cut - 1).inference_model() is not wrapper  # another cut, another wrapper
    with torch.inference_mode():
        want_maps = model.backbone.stages[:cut](model.normalize(images))
        want = model(images)
    assert np.array_equal(maps, want_maps.numpy()) and np.abs(descriptors - want.numpy()).max() < 1e-6  # per image
    assert np.array_equal(again, descriptors)


def test_the_last_maps_and_descriptors_of_one_pass_run_traced_on_real_photos(model, paths, one_thread):
    """Re-ranking's one pass (descriptors and the last, unnormalised feature maps, which reach 6 in MobileNetV2)
    runs the traced graph: the maps within 1e-5 of their scale, the descriptors within 1e-5, of the eager model."""
    images = torch.stack([load_image(path, "fixed", SIZE) for path in paths[:2]])
    cut = len(model.backbone.stages)
    run = cpu_runner(model).padded().with_local(cut)
    descriptors, maps = run(images)
    example = images[:1].contiguous(memory_format=torch.channels_last)
    assert isinstance(run.inference_model((1, 3, *SIZE), example), torch.jit.ScriptModule)
    with torch.inference_mode():
        want_maps = model.backbone.stages[:cut](model.normalize(images)).numpy()
        want = model(images).numpy()
    scale = np.abs(want_maps).max()
    assert scale > 1 and np.abs(maps - want_maps).max() <= 1e-5 * scale
    assert np.abs(descriptors - want).max() <= 1e-5
