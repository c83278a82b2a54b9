"""The training step encodes a batch's distinct images once: same loss and gradients as encoding every tuple's
images separately (bit for bit when no image is shared), and NHWC convolutions give the same values."""

from copy import deepcopy

import numpy as np
import pytest
import torch

from netvlad.models import PlaceModel
from netvlad.train import TrainConfig
from netvlad.train.loss import triplet_ranking_loss
from netvlad.train.mining import MinedTuples
from netvlad.train.step import GroupEncoder, batch_layout, frozen_batchnorm_train, tuple_loss, use_channels_last
from tests.train.conftest import TINY

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")


def _before():
    from benchmarks.train import tuple_loss_before

    return tuple_loss_before


def _model():
    torch.manual_seed(0)
    model = PlaceModel(TrainConfig(**TINY).model_config, pretrained=False)
    frozen_batchnorm_train(model)
    return model


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters() if p.requires_grad]


SHARED = MinedTuples(np.array([0, 1]), np.array([0, 1]), np.array([[1, 2, 3], [0, 2, -1]]), 0)  # db 0, 1, 2 twice
DISTINCT = MinedTuples(np.array([0, 1]), np.array([0, 1]), np.array([[2, 3, 4], [5, 6, -1]]), 0)


def test_layout_lists_each_image_once():
    layout = batch_layout(SHARED, [f"q{i}" for i in range(12)], [f"d{i}" for i in range(12)])
    assert layout.paths == ["q0", "d0", "d1", "d2", "d3", "q1"]
    assert layout.queries.tolist() == [0, 5] and layout.positives.tolist() == [1, 2]
    assert layout.negatives.tolist() == [[2, 3, 4], [1, 3, 0]] and layout.mask.tolist()[1] == [True, True, False]


def test_no_shared_image_is_bit_identical_to_before(tiny_dataset):
    q, d = tiny_dataset.queries.paths(), tiny_dataset.database.paths()
    model = _model()
    encoder = GroupEncoder(model)
    before = _before()(encoder, model, DISTINCT, q, d, 0.5, 0.5, CPU)
    now = tuple_loss(encoder, model, DISTINCT, q, d, 0.5, CPU)
    assert torch.equal(before, now) and before.item() > 0
    assert all(torch.equal(a, b) for a, b in zip(_grads(model, before), _grads(model, now), strict=True))


def test_shared_images_give_the_naive_loss_and_gradients(tiny_dataset):
    """Against an independent reference: each tuple's 5 images encoded on their own, the paper's loss averaged."""
    q, d = tiny_dataset.queries.paths(), tiny_dataset.database.paths()
    model = _model()
    from netvlad.train.step import load_group

    losses = []
    for b in range(2):
        negs = [n for n in SHARED.negatives[b] if n >= 0]
        paths = [q[SHARED.queries[b]], d[SHARED.positives[b]], *(d[n] for n in negs)]
        x = model(torch.cat(load_group(paths, model, CPU)[0]))
        losses.append(triplet_ranking_loss(x[:1], x[1:2].unsqueeze(1), x[None, 2:], 0.5))
    naive = torch.cat(losses).mean()
    now = tuple_loss(GroupEncoder(model), model, SHARED, q, d, 0.5, CPU)
    torch.testing.assert_close(now, naive, rtol=1e-5, atol=1e-7)
    for a, b in zip(_grads(model, naive), _grads(model, now), strict=True):
        assert (a - b).abs().max() <= 1e-4 * a.abs().max()  # float32 sums in another order


def test_channels_last_gives_the_same_loss_and_gradients(tiny_dataset):
    q, d = tiny_dataset.queries.paths(), tiny_dataset.database.paths()
    model = _model()
    nhwc = use_channels_last(deepcopy(model))
    assert nhwc.backbone.stages[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    a = tuple_loss(GroupEncoder(model), model, SHARED, q, d, 0.5, CPU)
    b = tuple_loss(GroupEncoder(nhwc, channels_last=True), nhwc, SHARED, q, d, 0.5, CPU)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for ga, gb in zip(_grads(model, a), _grads(nhwc, b), strict=True):
        assert (ga - gb).abs().max() <= 1e-4 * ga.abs().max()
