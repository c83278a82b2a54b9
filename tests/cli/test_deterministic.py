"""`--deterministic`: the tiny demo gives bit-identical weights and Recall@N whatever kernels the CPU would pick."""

import json
import os
import subprocess
import sys

import pytest

FORCED_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2",
               "FAISS_SIMD_LEVEL": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}


def _demo(out, env, *extra):
    """The tiny demo started in a fresh process (the kernels are chosen when torch loads); :func:`_results` waits."""
    environment = {k: v for k, v in os.environ.items() if k not in FORCED_AVX2} | env | {"NETVLAD_OFFLINE": "1"}
    command = [sys.executable, "-m", "netvlad.cli.main", "-q", "demo", "--preset", "tiny", "--out", str(out),
               "--device", "cpu", "--no-progress", "--threads", "1", *extra]
    with open(out.with_name(out.name + ".log"), "wb") as log:  # a file: a demo never blocks on a full pipe
        return subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)


def _results(demo, out):
    """The results.json the demo ``demo`` wrote into ``out``, once it has ended."""
    assert demo.wait(timeout=600) == 0, out.with_name(out.name + ".log").read_text()[-4000:]
    return json.loads((out / "report" / "results.json").read_text())


def _weights(out):
    """Every tensor's bytes of the three checkpoints (their metadata's key order may vary)."""
    from safetensors.numpy import load_file

    return {f"{name}:{key}": value.tobytes() for name in ("clusters/kmeans.safetensors", "run/best.safetensors",
                                                           "run/model.safetensors")
            for key, value in load_file(out / name).items()}


@pytest.mark.slow  # two tiny demos, ~15 s each, one thread each, run at once
def test_demo_is_bit_identical_under_other_kernels(tmp_path):
    # "best": the machine's best kernels, were they not pinned
    demos = _demo(tmp_path / "best", {}), _demo(tmp_path / "avx2", FORCED_AVX2)
    best, forced = _results(demos[0], tmp_path / "best"), _results(demos[1], tmp_path / "avx2")
    assert _weights(tmp_path / "best") == _weights(tmp_path / "avx2")
    assert best["table"] == forced["table"]
    recall = {m: r["recall"] for m, r in best["methods"].items()}
    assert recall == {m: r["recall"] for m, r in forced["methods"].items()}
    numerics = best["numerics"]
    assert numerics["deterministic"] and numerics["torch_cpu_capability"] == "DEFAULT"
    assert numerics["kernel_switches"]["MKL_CBWR"] == "COMPATIBLE" and "torch" in numerics["versions"]
    assert forced["numerics"]["torch_cpu_capability"] == "DEFAULT"
    assert "deterministic kernels" in (tmp_path / "best" / "report" / "index.md").read_text()


def test_pin_kernels_refuses_to_pretend_once_torch_is_loaded(monkeypatch, caplog):
    from netvlad.numerics import PINNED, deterministic, pin_kernels

    for name in PINNED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert pin_kernels() == {}  # torch is loaded in this test process: its kernels are chosen
    assert "already loaded" in caplog.text and os.environ["ATEN_CPU_CAPABILITY"] == "avx2"
    assert pin_kernels(force=True) == PINNED and os.environ["ATEN_CPU_CAPABILITY"] == "default"
    import torch

    assert deterministic() == (torch.backends.cpu.get_cpu_capability() == "DEFAULT")


def test_train_and_demo_flags(tmp_path):
    from netvlad.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["demo"]).deterministic
    assert not parser.parse_args(["demo", "--no-deterministic"]).deterministic
    assert not parser.parse_args(["train", str(tmp_path)]).deterministic
    assert parser.parse_args(["train", str(tmp_path), "--deterministic"]).deterministic
