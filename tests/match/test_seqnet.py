"""SeqNet sequence descriptors against seqNet's forward written out here (its window rule at sequence ends, the
temporal convolution as explicit sums, the mean over time, L2), on real Gardens Point descriptors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netvlad.match import SequenceConfig
from netvlad.match.seqnet import all_windows, seqnet_encoder
from netvlad.models.seqnet import SeqNet, SeqNetConfig
from tests.match.test_delta import seqnet_span


def seqnet_forward(model: SeqNet, window: np.ndarray) -> np.ndarray:
    """seqNet.forward + L2Norm: y(o, τ) = b(o) + Σ_u Σ_c W(o, c, u)·x(τ + u, c), averaged over τ, L2-normalised."""
    weight = model.conv.weight.detach().double().numpy()  # (D', D, w)
    bias = model.conv.bias.detach().double().numpy()
    x = window.astype(np.float64)
    width = weight.shape[2]
    steps = [bias + sum(weight[:, :, u] @ x[tau + u] for u in range(width)) for tau in range(len(x) - width + 1)]
    mean = np.mean(steps, axis=0)
    return mean / np.linalg.norm(mean)


@pytest.mark.parametrize("centred", [False, True])
def test_seqnet_descriptors_equal_seqnets_forward_on_real_frames(gardens_point_descriptors, centred):
    dataset, db, _ = gardens_point_descriptors
    torch.manual_seed(0)
    model = SeqNet(SeqNetConfig(input_dim=db.shape[1], output_dim=16, length=10, kernel=5)).eval()
    config = SequenceConfig(length=10, centred=centred)
    order = dataset.database.sequence
    got = seqnet_encoder(model)(db, order, config)
    members = order.members()[0]
    for t in (0, 1, 5, 100, 194, 199):  # both ends, where the window is shifted inside the sequence
        window = members[seqnet_span(t, len(members), config.before, config.length)]
        np.testing.assert_allclose(got[members[t]], seqnet_forward(model, db[window]), atol=1e-5)


def test_sequences_shorter_than_the_window_repeat_their_end_frames():
    from netvlad.data.sequences import SequenceOrder

    order = SequenceOrder(np.repeat([0, 1, 2], [4, 3, 2]), np.r_[np.arange(4), np.arange(3), np.arange(2)],
                          ("a", "b", "c"))
    # sequences of 4 and 3 frames keep 3-frame windows inside them; the last (2 frames) is padded
    assert all_windows(order, 2, 0).tolist() == [[0, 1, 2], [0, 1, 2], [0, 1, 2], [1, 2, 3], [4, 5, 6], [4, 5, 6],
                                                 [4, 5, 6], [7, 7, 7], [7, 7, 8]]
