"""Exact resume: a tiny run killed with SIGKILL mid-epoch and resumed ends with the uninterrupted run's weights."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from .conftest import TINY, make_tiny_dataset


def _command(root, run_dir, *extra):
    return [sys.executable, "-m", "netvlad.cli.main", "-q", "train", str(root), "--database", "database",
            "--queries", "queries", "--no-progress", "--device", "cpu", *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "NETVLAD_OFFLINE": "1"}


def _wait_for_mid_epoch(run_dir, process, timeout=300):
    """Poll the log until the second epoch has taken a step (its state is saved after every batch)."""
    log = run_dir / "log.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if log.is_file():
            events = [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]
            if any(e["event"] == "train" and e["epoch"] == 1 for e in events):
                return True
        time.sleep(0.02)
    return False


@pytest.mark.slow
def test_kill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    root = make_tiny_dataset(tmp_path / "data").database.root
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}
                                     | {"epochs": 3, "pretrained": True}))  # resume must not re-read them
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # the uninterrupted run beside the one to kill (one thread each: two cores run both at once)
    uninterrupted = subprocess.Popen(_command(root, straight, "--out", str(straight), "--config", str(config)),
                                     env=_env())
    process = subprocess.Popen(_command(root, killed, "--out", str(killed), "--config", str(config)), env=_env())
    try:
        assert _wait_for_mid_epoch(killed, process), "the run ended before it could be killed mid-epoch"
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert uninterrupted.wait(timeout=600) == 0, "the uninterrupted run failed"
    finally:
        process.kill()
        uninterrupted.kill()
    assert not (killed / "model.safetensors").exists()
    state = torch.load(killed / "state.pt", weights_only=True)
    assert state["epoch"] == 1, "the saved state should lie inside the second epoch"
    subprocess.run(_command(root, killed, "--resume", str(killed)), env=_env(), check=True)

    a, b = load_file(straight / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a), "resumed weights differ from the uninterrupted run's"
    assert any(json.loads(line)["event"] == "resume" for line in (killed / "log.jsonl").read_text().splitlines())
