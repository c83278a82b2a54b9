"""The ranking loss against hand-computed values (squared distances, margin 0.1, sum over negatives)."""

import pytest
import torch

from netvlad.train.loss import TripletRankingLoss, squared_distances, triplet_ranking_loss


def _example():
    q = torch.tensor([[0.0, 0.0]])
    positives = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # d² = 1 and 4: the best positive is at d² = 1
    negatives = torch.tensor([[[1.0, 0.5], [0.5, 0.5], [1.0, 0.2]]])  # d² = 1.25, 0.5, 1.04
    return q, positives, negatives


def test_loss_matches_hand_computation():
    # max(0, 1 + 0.1 − 1.25) + max(0, 1 + 0.1 − 0.5) + max(0, 1 + 0.1 − 1.04) = 0 + 0.6 + 0.06
    loss = triplet_ranking_loss(*_example(), margin=0.1)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(0.66, abs=1e-6)


def test_loss_uses_squared_not_plain_distances():
    # with plain distances (as the popular ports): 1 + 0.1 − √0.5 and 1 + 0.1 − √1.04 would give ≈ 0.4129
    assert triplet_ranking_loss(*_example()).item() != pytest.approx(0.4129, abs=1e-3)


def test_mask_drops_padding_and_batch_rows_are_independent():
    q, p, n = _example()
    mask = torch.tensor([[True, True, False]])
    assert triplet_ranking_loss(q, p, n, 0.1, mask).item() == pytest.approx(0.6, abs=1e-6)
    q2, p2, n2 = torch.cat([q, q + 10]), torch.cat([p, p + 10]), torch.cat([n, n + 10])
    both = triplet_ranking_loss(q2, p2, n2, 0.1)
    assert both.tolist() == pytest.approx([0.66, 0.66], abs=1e-5)


def test_gradient_of_one_active_term():
    # one negative, one positive: L = d²(q,p) + m − d²(q,n) while positive, so dL/dq = 2(q−p) − 2(q−n) = 2(n − p)
    q = torch.tensor([[0.1, 0.2]], requires_grad=True)
    p, n = torch.tensor([[[0.3, 0.1]]]), torch.tensor([[[0.2, 0.4]]])
    triplet_ranking_loss(q, p, n, 0.5).sum().backward()
    assert q.grad.tolist()[0] == pytest.approx([2 * (0.2 - 0.3), 2 * (0.4 - 0.1)], abs=1e-6)


def test_module_reductions_and_shapes():
    q, p, n = _example()
    assert TripletRankingLoss(reduction="sum")(q, p, n).item() == pytest.approx(0.66, abs=1e-6)
    assert TripletRankingLoss(reduction="none")(q, p, n).shape == (1,)
    assert squared_distances(q, n).tolist()[0] == pytest.approx([1.25, 0.5, 1.04])
    with pytest.raises(ValueError, match="reduction"):
        TripletRankingLoss(reduction="max")
    with pytest.raises(ValueError, match="expected query"):
        triplet_ranking_loss(q, p[0], n)


def test_batch_normalisations_match_hand_computation():
    from netvlad.train.loss import normalized_sum

    terms = torch.tensor([[0.0, 0.6, 0.06], [0.3, 0.0, 0.0]])  # tuple 2 has 2 negatives (the third is padding)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert normalized_sum(terms, mask, "sum", 2, 3).item() == pytest.approx((0.66 + 0.3) / 2)  # paper, eq. 7
    assert normalized_sum(terms, mask, "negative_mean", 2, 3).item() == pytest.approx((0.66 / 3 + 0.3 / 2) / 2)
    assert normalized_sum(terms, mask, "violating_mean", 2, 3).item() == pytest.approx(0.96 / 3)  # MATLAB code
    # on 2 ranks this rank's share is scaled by 2, so DDP's average over ranks is the batch loss
    assert normalized_sum(terms, mask, "sum", 4, 6, world=2).item() == pytest.approx(0.96 / 2)
    with pytest.raises(ValueError, match="negative_mean"):
        normalized_sum(terms, mask, "mean", 2, 3)
