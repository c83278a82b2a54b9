"""benchmarks/learning.py --quick: every loss normalisation's learning curve over 2 seeds on a generated toy set."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "learning.py"
pytestmark = pytest.mark.usefixtures("one_thread")


def test_learning_benchmark_quick(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("learning_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "quick.json").read_text())
    assert set(results["curves"]) == {"sum", "negative_mean", "violating_mean"}
    for by_seed in results["curves"].values():
        assert set(by_seed) == {"0", "1"}
        for curve in by_seed.values():
            assert [p["queries"] for p in curve["points"]] == [0, 8, 16]
            assert all(0 <= p["r1"] <= p["r5"] <= 100 for p in curve["points"])
    # a seed's variants start from the same k-means model, so their first points agree
    assert len({c["0"]["points"][0]["r1"] for c in results["curves"].values()}) == 1
    assert "| violating_mean | 16 | 2 |" in capsys.readouterr().out
