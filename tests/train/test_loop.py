"""The training loop on a tiny generated set: outputs, frozen layers, NaN stop, disk full, Adam + partial mining."""

import errno
import json

import numpy as np
import pytest
import torch

import netvlad
from netvlad.train import checkpoint, train
from netvlad.train.checkpoint import STATE_FILE

from .conftest import tiny_config


def _events(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_tiny_run_writes_everything(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    out = train(tiny_config(epochs=1, whitening_dim=8), tiny_dataset, run_dir, val=tiny_dataset)
    assert out == run_dir / "model.safetensors"
    for name in ("config.yaml", STATE_FILE, "init.safetensors", "best.safetensors", "log.jsonl"):
        assert (run_dir / name).is_file(), name
    model = netvlad.load(out)
    assert model.output_dim == 8  # PCA whitening fitted at the end
    events = _events(run_dir)
    kinds = {e["event"] for e in events}
    assert {"validation", "mining", "train", "done"} <= kinds
    mining = [e for e in events if e["event"] == "mining"]
    assert [e["queries"] for e in mining] == [6, 6]  # 12 queries, cache refreshed every 6
    assert all(e["tuples"] + e["skipped"] == e["queries"] for e in mining)
    validations = [e for e in events if e["event"] == "validation"]
    assert [v["epoch"] for v in validations] == [0, 1]  # the k-means model, then each epoch
    trained = sum(e["tuples"] for e in mining)
    assert sum(e["event"] == "train" for e in events) == sum(-(-e["tuples"] // 2) for e in mining) > 0
    assert trained > 0
    done = [e for e in events if e["event"] == "done"][-1]
    best = max(validations, key=lambda v: (v["recall@5"], -v["epoch"]))
    assert (done["best_epoch"], done["best_recall_at_5"]) == (best["epoch"], best["recall@5"])
    assert not (run_dir / "last.safetensors").exists()


def test_without_validation_the_last_epoch_is_kept_and_nothing_is_called_best(tiny_dataset, tmp_path, caplog):
    """No validation set: ``last.safetensors`` only, and no best epoch or Recall@5 that no validation produced."""
    run_dir = tmp_path / "run"
    with caplog.at_level("INFO", logger="netvlad.train.loop"):
        train(tiny_config(epochs=1), tiny_dataset, run_dir)
    assert not (run_dir / "best.safetensors").exists()
    last, final = _tensors(run_dir / "last.safetensors"), _tensors(run_dir / "model.safetensors")
    assert last.keys() == final.keys() and all(torch.equal(last[k], final[k]) for k in last)
    done = [e for e in _events(run_dir) if e["event"] == "done"][-1]
    assert done["kept"] == "last epoch, no validation" and done["last_epoch"] == 1
    assert not any(key.startswith("best") for key in done)
    assert not any(e["event"] == "validation" for e in _events(run_dir))
    assert "kept the last epoch (1): last epoch, no validation" in caplog.text
    extra = netvlad.models.io.read_checkpoint(run_dir / "model.safetensors", tensors=False)[2]
    assert extra["kept"] == "last epoch, no validation" and "best_epoch" not in extra


def test_frozen_layers_stay_and_trained_ones_move(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(epochs=1), tiny_dataset, run_dir)
    init, final = netvlad.load(run_dir / "init.safetensors"), netvlad.load(run_dir / "model.safetensors")
    first_trained = init.backbone.train_from
    for i, (a, b) in enumerate(zip(init.backbone.stages, final.backbone.stages, strict=True)):
        same = all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
        assert same == (i < first_trained), f"stage {i}"
    assert not torch.equal(init.pool.centroids, final.pool.centroids)


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_nan_loss_stops_and_keeps_the_last_good_state(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="NaN.*the last good state .*state.pt is intact"):
        train(tiny_config(epochs=1, lr=1e38, momentum=0.0, checkpoint_every=100), tiny_dataset, run_dir)
    state = torch.load(run_dir / STATE_FILE, weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_disk_full_while_saving_keeps_the_previous_state(tiny_dataset, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    train(tiny_config(epochs=1), tiny_dataset, run_dir)
    before = (run_dir / STATE_FILE).read_bytes()

    def full_disk(obj, path):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    progress = checkpoint.RunState(rng=np.random.default_rng(0), previous=np.zeros((1, 1), dtype=np.int64))
    model = netvlad.load(run_dir / "model.safetensors")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save_state(run_dir, progress, model, optimizer, scheduler)
    assert (run_dir / STATE_FILE).read_bytes() == before
    assert [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_adam_with_partial_mining(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(epochs=1, optimizer="adam", lr=1e-4, mining="partial", partial_database=4), tiny_dataset,
          run_dir)
    mining = [e for e in _events(run_dir) if e["event"] == "mining"]
    # 4 random database images plus the chunk's 6 positives (some may coincide)
    assert all(6 <= e["cached_database"] <= 10 for e in mining)
    state = torch.load(run_dir / STATE_FILE, weights_only=True)
    assert "exp_avg" in next(iter(state["optimizer"]["state"].values()))  # Adam's moments


def test_precomputed_frozen_features_train_the_same_weights(tiny_dataset, tmp_path):
    with_frozen, without = tmp_path / "with", tmp_path / "without"
    train(tiny_config(epochs=1, cache_dtype="float32"), tiny_dataset, with_frozen)
    train(tiny_config(epochs=1, cache_dtype="float32", precompute_frozen=False), tiny_dataset, without)
    a, b = netvlad.load(with_frozen / "model.safetensors"), netvlad.load(without / "model.safetensors")
    init = netvlad.load(with_frozen / "init.safetensors")
    for (name, x), y, x0 in zip(a.state_dict().items(), b.state_dict().values(), init.state_dict().values(),
                                strict=True):
        update = (x.double() - x0.double()).norm()
        assert (x.double() - y.double()).norm() <= 1e-3 * update + 1e-6, name
