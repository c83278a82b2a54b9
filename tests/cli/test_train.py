"""`netvlad train` and `netvlad cluster` from the command line: flags, config files, resume guard, errors."""

import dataclasses

import pytest
import yaml

import netvlad
from netvlad.cli.main import build_parser, main
from netvlad.train import TrainConfig
from tests.train.conftest import TINY, make_tiny_dataset

DATA = ["--database", "database", "--queries", "queries", "--no-progress", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("cli-tiny")).database.root


def test_every_config_key_is_a_flag():
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    for f in dataclasses.fields(TrainConfig):
        assert f"--{f.name.replace('_', '-')}" in help_text, f.name


def test_config_file_then_flags(folder, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}
                                     | {"epochs": 1, "lr": 0.01}))
    run_dir = tmp_path / "run"
    code = main(["-q", "train", str(folder), *DATA, "--config", str(config), "--out", str(run_dir),
                 "--lr", "0.002", "--no-tensorboard", "--whitening-dim", "none", "--size", "64", "64"])
    assert code == 0
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["lr"] == 0.002  # the flag beats the file
    assert resolved["num_clusters"] == 4 and resolved["epochs"] == 1  # the file beats the defaults
    assert resolved["momentum"] == 0.9  # the default where neither says
    assert netvlad.load(run_dir / "model.safetensors").pool.num_clusters == 4
    # a second run into the same folder must say how to continue instead of overwriting
    assert main(["-q", "train", str(folder), *DATA, "--config", str(config), "--out", str(run_dir)]) == 1


def test_bad_config_key_is_a_one_line_error(folder, tmp_path, caplog):
    config = tmp_path / "typo.yaml"
    config.write_text("learning_rate: 0.1\n")
    assert main(["train", str(folder), *DATA, "--config", str(config), "--out", str(tmp_path / "r")]) == 1
    assert "typo.yaml: unknown training option(s) ['learning_rate']" in caplog.text
    assert main(["train", str(folder), *DATA, "--resume", str(tmp_path / "nothing")]) == 1
    assert "nothing: run folder not found" in caplog.text


def test_cluster_command_writes_an_initialised_checkpoint(folder, tmp_path):
    out = tmp_path / "init.safetensors"
    code = main(["-q", "cluster", str(folder), *DATA, "--out", str(out), "--no-pretrained", "--clusters", "4",
                 "--resize", "fixed", "--size", "64", "64", "--descriptors", "200", "--per-image", "4",
                 "--images", "12", "--niter", "10"])
    assert code == 0
    model = netvlad.load(out)
    assert model.pool.num_clusters == 4 and model.config.preprocessing.size == (64, 64)
    from netvlad.models import read_checkpoint

    assert read_checkpoint(out)[2]["alpha"] > 0
