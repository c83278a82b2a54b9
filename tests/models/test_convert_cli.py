"""`netvlad convert SRC --out CKPT [--from ...]` end to end, and its one-line errors."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from netvlad import load
from netvlad.cli.main import main
from tests.models.test_convert_pytorch import make_state, nanne_checkpoint, reference_forward


def test_convert_writes_a_checkpoint_with_provenance(tmp_path):
    state = make_state("alexnet", k=8, vladv2=True, pcs=16)
    torch.save({"num_pcs": 16, "state_dict": state}, tmp_path / "p_WPCA16.pth.tar")
    out = tmp_path / "p.safetensors"
    assert main(["convert", str(tmp_path / "p_WPCA16.pth.tar"), "--out", str(out)]) == 0
    model = load(out).double()
    images = torch.rand(2, 3, 96, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference_forward(state, "alexnet", images), atol=1e-6, rtol=0)
    with safe_open(str(out), framework="pt") as handle:
        extra = json.loads(handle.metadata()["extra"])
    assert extra["converted_from"]["format"] == "patchnetvlad" and extra["converted_from"]["num_pcs"] == 16


def test_convert_flags_and_errors(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("NETVLAD_PRETRAINED_DIR", str(tmp_path / "cache"))
    torch.save(nanne_checkpoint(make_state("alexnet", k=8, vladv2=False, pcs=None)), tmp_path / "c.pth.tar")
    out = tmp_path / "c.safetensors"
    assert main(["convert", str(tmp_path / "c.pth.tar"), "--out", str(out), "--from", "pytorch-netvlad",
                 "--clusters", "8", "--no-vladv2"]) == 0
    assert load(out).config.num_clusters == 8
    assert main(["convert", str(tmp_path / "c.pth.tar"), "--out", str(out), "--vladv2"]) == 1
    assert "vladv2=True" in caplog.text
    assert main(["convert", str(tmp_path / "missing.mat"), "--out", str(out)]) == 1
    assert "no such file" in caplog.text
    assert main(["convert", "vgg16-netvlad-tokyotm", "--out", str(out)]) == 1  # offline in tests
    assert "TokyoTM_struct.mat" in caplog.text
