"""A training run records its dataset: the library entry gives the command's record and weights."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from netvlad.cli.main import main
from netvlad.errors import BadInputError
from netvlad.train import TrainConfig
from netvlad.train.dataset_record import read_dataset_record, record_dataset, train_run
from tests.train.conftest import TINY, make_tiny_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


def test_image_root_is_recorded_as_text_and_read_back(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    record_dataset(tmp_path, str(tmp_path), {"image_root": root, "skip_bad": False})
    assert json.loads((tmp_path / "dataset.json").read_text())["image_root"] == str(root.resolve())
    source, options = read_dataset_record(tmp_path)
    assert source == tmp_path.resolve() and options["image_root"] == str(root.resolve())
    assert options["database"] is None and not options["skip_bad"]


def test_train_run_gives_the_commands_record_and_weights(tmp_path):
    folder = make_tiny_dataset(tmp_path / "data").database.root
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()} | {"epochs": 1}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(values))
    cli, py = tmp_path / "cli", tmp_path / "py"
    assert main(["-q", "train", str(folder), "--database", "database", "--queries", "queries", "--no-progress",
                 "--device", "cpu", "--config", str(tmp_path / "tiny.yaml"), "--out", str(cli)]) == 0
    out = train_run(TrainConfig.from_dict(values), py, folder, {"database": "database", "queries": "queries",
                                                                       "skip_bad": False})
    assert out == py / "model.safetensors"
    assert json.loads((py / "dataset.json").read_text()) == json.loads((cli / "dataset.json").read_text())
    ours, theirs = load_file(out), load_file(cli / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    with pytest.raises(BadInputError, match="give the DATASET to train on"):
        train_run(TrainConfig.from_dict(values), tmp_path / "none")
