"""`train --resume` keeps the kernels (and a deterministic run's threads) the run started with, or refuses."""

import json
import logging

import pytest
import torch

from netvlad import numerics
from netvlad.cli.main import main


@pytest.fixture
def run_dir(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    return folder


def _started(run_dir, **changes):
    record = numerics.numeric_environment() | {"torch_threads": 1} | changes
    (run_dir / "numerics.json").write_text(json.dumps(record))


def _error(caplog):
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"][-1]


def test_resume_with_other_kernels_is_refused(run_dir, caplog):
    _started(run_dir, deterministic=True)
    assert main(["train", "--resume", str(run_dir), "--threads", "1"]) == 1
    line = _error(caplog)
    assert "started with deterministic kernels" in line and "would run the CPU's fastest kernels" in line
    assert "--deterministic" in line and "\n" not in line
    assert not (run_dir / "config.yaml").exists() and json.loads((run_dir / "numerics.json").read_text())[
        "deterministic"] is True  # nothing read or overwritten


def test_resume_of_a_fast_run_under_deterministic_kernels_is_refused(run_dir, caplog, monkeypatch):
    _started(run_dir, deterministic=False)
    pinned = numerics.numeric_environment
    monkeypatch.setattr(numerics, "numeric_environment", lambda: pinned() | {"deterministic": True})
    assert main(["train", "--resume", str(run_dir), "--threads", "1"]) == 1
    line = _error(caplog)
    assert "started with the CPU's fastest kernels" in line and "would run deterministic kernels" in line
    assert "--no-deterministic" in line


def test_threads_matter_for_a_deterministic_run_only(run_dir, caplog, monkeypatch):
    threads = torch.get_num_threads()
    pinned = numerics.numeric_environment
    monkeypatch.setattr(numerics, "numeric_environment", lambda: pinned() | {"deterministic": True})
    _started(run_dir, deterministic=True, torch_threads=3)
    try:
        assert main(["train", "--resume", str(run_dir), "--threads", "1"]) == 1
        line = _error(caplog)
        assert "started with 3 torch threads, this resume runs 1" in line and "--threads 3" in line
        caplog.clear()
        monkeypatch.setattr(numerics, "numeric_environment", pinned)
        _started(run_dir, deterministic=False, torch_threads=3)
        with caplog.at_level(logging.WARNING):
            main(["train", "--resume", str(run_dir), "--threads", "1"])  # goes on: fails later (no config.yaml)
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("started with 3 torch threads" in w and "may differ" in w for w in warnings)
    finally:
        torch.set_num_threads(threads)
