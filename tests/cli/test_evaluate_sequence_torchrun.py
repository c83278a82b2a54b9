"""`netvlad evaluate --sequence` under torchrun (2 gloo processes on CPU): every rank fills its rows of the store,
rank 0 matches the sequences, and the report is the one-process report, sequence columns included."""

from __future__ import annotations

import json

import pytest

from netvlad.cli.main import main
from tests.cli.test_extract import _evaluate, _report, _torchrun, setup  # noqa: F401 - the fixture is used


@pytest.mark.slow
def test_sequence_under_torchrun_gives_the_one_process_sequence_recall(setup, tmp_path, capsys):  # noqa: F811
    sequence = ("--sequence", "5", "--sequence-method", "seqslam", "--propagate", "2")
    assert main(_evaluate(setup, tmp_path / "one.json", "--store", str(tmp_path / "one"), *sequence)) == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("R@1"):printed.index("wrote")]
    two = _torchrun(_evaluate(setup, tmp_path / "two.json", "--store", str(tmp_path / "two"), "--batch-size", "2",
                              *sequence), tmp_path / "logs")
    out = two.stdout.read()
    assert two.wait(timeout=300) == 0, out
    assert out.count("seqslam L=5 causal") == 1 and table in out  # rank 0 alone matches and prints
    one, other = json.loads((tmp_path / "one.json").read_text()), json.loads((tmp_path / "two.json").read_text())
    assert one["sequence_recall"] == other["sequence_recall"] and one["sequence_recall"]["num_queries"] == 24
    assert _report(tmp_path / "one.json") == _report(tmp_path / "two.json")  # JSON and per-query CSV, byte for byte
