"""`netvlad train` and `netvlad cluster` from the command line: flags, config files, resume guard, errors."""

import dataclasses

import pytest
import torch
import yaml

import netvlad
from netvlad.cli.main import build_parser, main
from netvlad.cli.train import flag_of
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
        assert flag_of(f.name) in help_text, f.name


@pytest.mark.parametrize("command", [["train", "DATA"], ["evaluate", "DATA"],
                                     ["convert", "vgg16-netvlad-pitts30k", "--out", "x"]])
def test_clusters_is_one_flag_and_the_old_spelling_points_to_it(folder, command, capsys):
    parser = build_parser()
    leaf = parser._subparsers._group_actions[0].choices[command[0]]
    assert "--clusters" in leaf._option_string_actions and "--num-clusters" not in leaf._option_string_actions
    argv = [str(folder) if word == "DATA" else word for word in command]
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--num-clusters", "8"])
    assert stop.value.code == 2 and "--num-clusters is now --clusters" in capsys.readouterr().err


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


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _validations(run_dir):
    import json

    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "validation"]


def test_same_seed_and_threads_give_bit_identical_weights_and_recalls(folder, tmp_path):
    """Two `netvlad train` runs with one seed and one thread: equal tensors bit for bit, equal Recall@N."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}
                                     | {"epochs": 2, "val_places": 4}))
    runs = [tmp_path / "a", tmp_path / "b"]
    for run_dir in runs:
        assert main(["-q", "train", str(folder), *DATA, "--config", str(config), "--out", str(run_dir),
                     "--seed", "3", "--threads", "1"]) == 0
    for name in ("init.safetensors", "best.safetensors", "model.safetensors"):
        a, b = (_tensors(run_dir / name) for run_dir in runs)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert len(_validations(runs[0])) == 3  # epochs 0 (k-means), 1 and 2
    assert [{k: v for k, v in e.items() if k != "time"} for e in _validations(runs[0])] == \
        [{k: v for k, v in e.items() if k != "time"} for e in _validations(runs[1])]


def test_resume_needs_only_the_run_folder(folder, tmp_path):
    """A run records its DATASET arguments; `--resume RUN_DIR` alone reads them back and continues."""
    import json

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}
                                     | {"epochs": 1}))
    run_dir = tmp_path / "run"
    assert main(["-q", "train", str(folder), *DATA, "--config", str(config), "--out", str(run_dir)]) == 0
    recorded = json.loads((run_dir / "dataset.json").read_text())
    assert recorded["dataset"] == str(folder.resolve()) and recorded["database"] == "database"
    before = _tensors(run_dir / "model.safetensors")
    (run_dir / "model.safetensors").unlink()
    assert main(["-q", "train", "--resume", str(run_dir), "--no-progress", "--device", "cpu"]) == 0
    after = _tensors(run_dir / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert main(["-q", "train", "--out", str(tmp_path / "other"), "--no-progress"]) == 1  # no DATASET, no resume
