"""SeqNet (shape, save/load, refusals, training), and the three
methods through the evaluation on a route whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.sequences import SequenceOrder
from netvlad.errors import BadInputError
from netvlad.eval.recall import evaluate_descriptors
from netvlad.eval.sequence import require_sequences, sequence_ranking
from netvlad.match import SequenceConfig
from netvlad.match.seqnet import seqnet_encoder
from netvlad.match.sequence import METHODS
from netvlad.models.seqnet import SeqNet, SeqNetConfig, load_seqnet, save_seqnet
from netvlad.train.seqnet import SeqNetTraining, train_seqnet
from tests.match.test_seqslam import route


def route_dataset(n: int, dim: int, seed: int, noise: float, sequences: bool = True):
    """A frame-synchronised route: (dataset with ±0 frame ground truth, db descriptors, query descriptors)."""
    database, queries = route(n, dim, seed, noise)
    utm = np.stack([np.arange(n) * 25.0, np.zeros(n)], 1)
    order = SequenceOrder.single(np.arange(n)) if sequences else None
    side = ImageList("/x", tuple(f"{i}.png" for i in range(n)), utm, frames=np.arange(n), sequence=order)
    return GeoDataset("route", side, side, frame_tolerance=0), database, queries


def test_seqnet_shapes_save_load_and_refusals(tmp_path):
    model = SeqNet(SeqNetConfig(input_dim=8, output_dim=4, length=5, kernel=3)).eval()
    windows = torch.randn(2, 5, 8)
    out = model(windows)
    assert out.shape == (2, 4) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    path = save_seqnet(model, tmp_path / "s.safetensors")
    again = load_seqnet(path, descriptor_dim=8, length=5)
    assert torch.allclose(again(windows), out)
    with pytest.raises(BadInputError, match="SeqNet for 8-D descriptors, but the model gives 16-D"):
        load_seqnet(path, descriptor_dim=16)
    with pytest.raises(BadInputError, match="L = 5 frames, but L = 10 was asked"):
        load_seqnet(path, length=10)
    with pytest.raises(ValueError, match=r"expects \(B, 5, 8\)"):
        model(torch.randn(2, 4, 8))
    (tmp_path / "x.safetensors").write_bytes(b"nope")
    with pytest.raises(BadInputError, match="not a SeqNet model"):
        load_seqnet(tmp_path / "x.safetensors")


def test_a_seqnet_file_that_disagrees_with_itself_or_holds_nan_is_refused_in_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_seqnet(SeqNet(SeqNetConfig(input_dim=8, output_dim=4, length=5, kernel=3)), tmp_path / "s.safetensors")
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()

    def rewritten(name, tensors=tensors, **config):
        meta = metadata | {"config": json.dumps(json.loads(metadata["config"]) | config)}
        save_file(tensors, str(tmp_path / name), metadata=meta)
        return tmp_path / name

    cases = [(rewritten("dim.safetensors", output_dim=6), r"disagree with its config: conv.bias is \(4,\) where its "
              r"config \(8-D → Conv1d\(kernel 3\) → 6-D, L = 5\) needs \(6,\)"),
             (rewritten("huge.safetensors", input_dim=10**9), "disagree with its config"),  # nothing allocated
             (rewritten("less.safetensors", {k: v for k, v in list(tensors.items())[1:]}), "is missing"),
             (rewritten("more.safetensors", tensors | {"extra": torch.zeros(1)}), "extra is not part of a SeqNet"),
             (rewritten("half.safetensors", kernel=2.5), "must be integers"),
             (rewritten("nan.safetensors", {k: torch.full_like(v, float("nan")) for k, v in tensors.items()}),
              "holds NaN or inf")]
    for bad, words in cases:
        with pytest.raises(BadInputError, match=words) as error:
            load_seqnet(bad)
        assert str(bad) in str(error.value) and "\n" not in str(error.value)


def test_seqnet_training_lowers_the_loss_and_finds_the_route():
    torch.manual_seed(0)
    train, db, q = route_dataset(150, 16, seed=7, noise=2.0)
    config = SeqNetTraining(length=5, output_dim=16, kernel=3, epochs=4, epoch_queries=150, negative_samples=60,
                            num_negatives=5, lr=3e-3)
    model, log = train_seqnet(db, q, train, config)
    assert log[-1]["loss"] < log[0]["loss"]
    encode = seqnet_encoder(model)
    seq_config = SequenceConfig(length=5)
    result = evaluate_descriptors(encode(db, train.database.sequence, seq_config),
                                  encode(q, train.queries.sequence, seq_config), train.positives(), (1,))
    single = evaluate_descriptors(db, q, train.positives(), (1,))
    assert result.recall[1] > single.recall[1] + 10


@pytest.mark.parametrize("method", METHODS.names())
def test_methods_through_the_evaluation(method):
    data, db, q = route_dataset(120, 24, seed=8, noise=2.0)
    single = evaluate_descriptors(db, q, data.positives(), (1, 5), k=20)
    encoder = None
    if method == "seqnet":  # a 1-wide kernel set to the identity: the mean descriptor of the window
        model = SeqNet(SeqNetConfig(24, 24, 6, 1))
        with torch.no_grad():
            model.conv.weight.copy_(torch.eye(24)[:, :, None])
            model.conv.bias.zero_()
        encoder = seqnet_encoder(model.eval())
    result = sequence_ranking(method, db, q, data, single, SequenceConfig(length=6, shortlist=20), (1, 5),
                              encoder=encoder)
    # Delta shifts its windows to keep L frames; the trajectory methods shorten them at a sequence's start
    shortened, shifted = (0, 5) if METHODS.get(method).shifted else (5, 0)
    assert result.ranked.shape[0] == 120 and result.summary()["shortened_windows"] == shortened
    assert result.summary()["shifted_windows"] == shifted
    assert result.summary()["method"] == method and result.summary()["sequence_length"] == 6
    if method != "delta":  # Delta only differences the window: noisy on an unordered random route
        assert result.recall[1] > single.recall[1] + 15
    assert "single frame" in result.table(single)


def test_missing_order_and_too_long_sequences_are_refused():
    data, _, _ = route_dataset(12, 4, seed=9, noise=0.1, sequences=False)
    with pytest.raises(BadInputError, match="the queries carry no sequence order; give sequence matching "
                                            "frame-numbered file names"):
        require_sequences(data, SequenceConfig(length=3))
    data, _, _ = route_dataset(12, 4, seed=9, noise=0.1)
    with pytest.raises(BadInputError, match=r"length 20 is longer than every query sequence \(the longest has 12"):
        require_sequences(data, SequenceConfig(length=20))
    with pytest.raises(BadInputError, match="needs a trained SeqNet"):
        sequence_ranking("seqnet", np.zeros((12, 4), np.float32), np.zeros((12, 4), np.float32), data,
                         evaluate_descriptors(np.eye(12, 4, dtype=np.float32), np.eye(12, 4, dtype=np.float32),
                                              data.positives(), (1,)), SequenceConfig(length=3), (1,))
