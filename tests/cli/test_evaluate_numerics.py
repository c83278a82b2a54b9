"""`evaluate --output` records what decides its numbers, as the demo's report does (netvlad.numerics)."""

import json
from importlib import metadata

import torch

from netvlad.cli.main import main
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
from netvlad.numerics import numeric_environment
from tests.conftest import copy_sequence, shared_dataset


def test_evaluate_json_records_the_numerics(tmp_path, capsys):
    sequence = copy_sequence(shared_dataset("gardens_point"), tmp_path / "gp", ("day_left", "day_right"),
                             [f"Image{i:03d}.jpg" for i in range(0, 200, 25)])
    model = PlaceModel(ModelConfig(pool="gem", preprocessing=Preprocessing("fixed", (32, 48))), pretrained=False)
    save_model(model, tmp_path / "m.safetensors")
    out = tmp_path / "r" / "results.json"
    threads = torch.get_num_threads()
    try:
        assert main(["evaluate", str(sequence), "--database", "day_left", "--queries", "day_right",
                     "--frame-tolerance", "2", "--workers", "0", "--no-progress", "--no-pictures", "--threads", "1",
                     "--engine", "torch", "--model", str(tmp_path / "m.safetensors"), "--output", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    numerics = json.loads(out.read_text())["numerics"]
    expected = numeric_environment()
    assert set(numerics) == set(expected) | {"engine"}  # the same record as the demo's results.json, + the engine
    assert numerics["engine"] == "torch" and numerics["torch_threads"] == 1
    assert numerics["deterministic"] is expected["deterministic"] is False  # this test process pins nothing
    assert numerics["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert numerics["versions"]["torch"] == metadata.version("torch") and "netvlad" in numerics["versions"]
    assert numerics["cpu_isa"] == expected["cpu_isa"] and set(numerics["kernel_switches"]) >= {"MKL_CBWR"}
