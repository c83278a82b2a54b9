"""The training loop's cache refresh and validation through onnxruntime: the current weights exported at each
refresh (in memory), the same training as torch's, and the same weights again at the same seed and threads."""

from __future__ import annotations

import pytest
import torch

import netvlad
from netvlad.extract import engine as engine_module
from netvlad.train import train

from .conftest import tiny_config

pytest.importorskip("onnxruntime")


def _train(dataset, run_dir, engine):
    engine_module._SESSIONS.clear()  # as a new process
    train(tiny_config(epochs=1, cache_dtype="float32", precompute_frozen=False, val_places=4, engine=engine),
          dataset, run_dir)
    return netvlad.load(run_dir / "model.safetensors").state_dict()


def test_onnxruntime_refresh_trains_torch_weights_and_repeats_bit_for_bit(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("NETVLAD_CACHE", str(tmp_path / "cache"))
    by_torch = _train(tiny_dataset, tmp_path / "torch", "torch")
    by_ort = _train(tiny_dataset, tmp_path / "ort", "onnxruntime")
    assert any(key[0].fingerprint for key in engine_module._SESSIONS)  # the refreshes ran through onnxruntime
    again = _train(tiny_dataset, tmp_path / "ort2", "onnxruntime")
    init = netvlad.load(tmp_path / "torch" / "init.safetensors").state_dict()
    for name, x in by_torch.items():
        update = (x.double() - init[name].double()).norm()
        assert (x.double() - by_ort[name].double()).norm() <= 1e-3 * update + 1e-6, name
        assert torch.equal(by_ort[name], again[name]), name  # same seed and threads: the same weights
    assert not (tmp_path / "cache").exists()  # refresh exports live in memory, never in the export cache
