"""The benchmarks keep their data under $NETVLAD_BENCH_DIR or the system's temp dir, never a fixed absolute path."""

import importlib.util
import re
import tempfile
from pathlib import Path

from tests.conftest import REPO


def _workdir():
    spec = importlib.util.spec_from_file_location("workdir", REPO / "benchmarks" / "workdir.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_work_dir_follows_the_environment(monkeypatch, tmp_path):
    workdir = _workdir()
    monkeypatch.delenv(workdir.ENV, raising=False)
    assert workdir.work_dir("scale-run") == Path(tempfile.gettempdir()) / "netvlad-bench" / "scale-run"
    monkeypatch.setenv(workdir.ENV, str(tmp_path))
    assert workdir.work_dir("scale-city", "city1") == tmp_path / "scale-city" / "city1"


def test_no_benchmark_defaults_to_a_fixed_folder():
    for script in (REPO / "benchmarks").glob("*.py"):
        text = script.read_text()
        assert not re.search(r"Path\(\"/(work|tmp|home|data)", text), script.name
