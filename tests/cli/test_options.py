"""``--engine`` on every command that describes images: the same Recall@N and descriptors through onnxruntime as
through torch, the engine in the report, and one-line refusals."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from netvlad.cli.main import build_parser, main
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
from tests.conftest import copy_sequence, shared_dataset

pytest.importorskip("onnxruntime")

COMMANDS = [["evaluate"], ["extract"], ["index", "build"], ["query"], ["retrieve"], ["export", "hloc"], ["demo"]]


def _leaf(parser, words):
    for word in words:
        parser = next(a for a in parser._actions if a.dest and a.choices and word in a.choices).choices[word]
    return parser


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_describing_command_has_the_engine_flag(words):
    action = _leaf(build_parser(), words)._option_string_actions["--engine"]
    assert set(action.choices) == {"torch", "onnxruntime", "auto"} and action.default == "torch"  # tests' default


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    return copy_sequence(shared_dataset("gardens_point"), tmp_path_factory.mktemp("gp"), ("day_left", "day_right"),
                         [f"Image{i:03d}.jpg" for i in range(0, 200, 20)])


@pytest.fixture
def checkpoint(tmp_path):
    model = PlaceModel(ModelConfig(pool="gem", preprocessing=Preprocessing("fixed", (64, 96)))).eval()
    return save_model(model, tmp_path / "m.safetensors") or tmp_path / "m.safetensors"


def _evaluate(sequence, checkpoint, out, engine):
    return main(["evaluate", str(sequence), "--database", "day_left", "--queries", "day_right", "--frame-tolerance",
                 "2", "--workers", "0", "--no-progress", "--model", str(checkpoint), "--output", str(out),
                 "--no-pictures", "--engine", engine, "--threads", "1"])


def test_evaluate_gives_the_same_recall_through_onnxruntime(sequence, checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("NETVLAD_CACHE", str(tmp_path / "cache"))
    reports = {}
    for engine in ("torch", "onnxruntime"):
        assert _evaluate(sequence, checkpoint, tmp_path / engine / "r.json", engine) == 0
        reports[engine] = json.loads((tmp_path / engine / "r.json").read_text())
    assert reports["onnxruntime"]["recall"] == reports["torch"]["recall"]
    assert (reports["torch"]["engine"], reports["onnxruntime"]["engine"]) == ("torch", "onnxruntime")
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 1  # exported once, under $NETVLAD_CACHE


def test_extract_store_holds_torch_descriptors(sequence, checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("NETVLAD_CACHE", str(tmp_path / "cache"))
    stores = {}
    for engine in ("torch", "onnxruntime"):
        assert main(["extract", str(sequence), "--database", "day_left", "--queries", "day_right", "--workers", "0",
                     "--no-progress", "--model", str(checkpoint), "--store", str(tmp_path / engine),
                     "--engine", engine]) == 0
        stores[engine] = np.load(tmp_path / engine / "queries" / "descriptors.npy")
    assert np.abs(stores["onnxruntime"] - stores["torch"]).max() <= 1e-5


def test_onnxruntime_missing_is_one_error_line_naming_the_extra(sequence, checkpoint, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with caplog.at_level(logging.ERROR):
        assert _evaluate(sequence, checkpoint, tmp_path / "r.json", "onnxruntime") == 1
    assert "netvlad[export]" in caplog.text
