"""Resuming a run that already finished: no frozen-feature precompute, the same final model, no extra epoch."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from netvlad.train import loop

from .conftest import tiny_config


def test_resume_of_a_finished_run_skips_precompute_and_training(tiny_dataset, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    config = tiny_config(epochs=1)
    loop.train(config, tiny_dataset, run_dir)
    before = load_file(run_dir / "model.safetensors")
    epochs = [json.loads(line).get("epoch") for line in (run_dir / "log.jsonl").read_text().splitlines()]

    def no_precompute(*args, **kwargs):
        raise AssertionError("frozen features precomputed for a finished run")

    monkeypatch.setattr(loop, "compute_frozen", no_precompute)
    out = loop.train(config, tiny_dataset, run_dir, resume=True)
    after = load_file(out)
    assert before.keys() == after.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], atol=0, rtol=0)
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert not [x for x in lines if x.get("event") == "validation" and x.get("epoch", 0) > max(e or 0 for e in epochs)]
