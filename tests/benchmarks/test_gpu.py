"""benchmarks/gpu.py runs end to end on a CPU at toy sizes (random weights): every row of its table is measured."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


@pytest.mark.slow
def test_gpu_benchmark_runs_tiny_on_cpu(capsys):
    spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        text = module.main(["--tiny", "--device", "cpu", "--workers", "0"])
    finally:
        torch.set_num_threads(threads)
    assert text in capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    names = [row.split(" | ")[0].lstrip("| ") for row in rows]
    for mode in ("fp32", "bf16", "bf16+channels_last"):
        assert any(f"{mode}, batch 2" in row for row in rows), mode
    for name in ("JPEG decode + resize", "whole pipeline: files → store", "bare backbone forward",
                 "pipeline / bare", "training step", "search"):
        assert name in names, name
    figures = [float(re.search(r"([\d,.]+)", row.rsplit(" | ", 1)[1]).group(1).replace(",", "")) for row in rows]
    assert all(f > 0 for f in figures)
