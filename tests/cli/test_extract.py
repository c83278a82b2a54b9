"""`netvlad extract`: two torchrun processes (gloo, CPU) write the bytes one process writes, survive a killed
rank, and bad input (shard text, plan, missing shared folder) gets a clear error."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from netvlad.cli.main import main
from netvlad.eval.store import PENDING, DescriptorStore
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
from tests.conftest import shared_dataset

TORCHRUN = Path(sys.executable).with_name("torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NETVLAD_OFFLINE": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """24 + 24 Gardens Point photographs and a tiny checkpoint (random MobileNetV2 + GeM at 96×128)."""
    gardens = shared_dataset("gardens_point")
    root = tmp_path_factory.mktemp("gp")
    for side in ("day_left", "day_right"):
        (root / side).mkdir()
        for i in range(0, 192, 8):
            shutil.copy(gardens / side / f"Image{i:03d}.jpg", root / side / f"Image{i:03d}.jpg")
    model = PlaceModel(ModelConfig(pool="gem", preprocessing=Preprocessing("fixed", (96, 128))), pretrained=False)
    save_model(model, root / "model.safetensors")
    return root


def _args(root, store, *extra):
    return ["extract", str(root), "--database", "day_left", "--queries", "day_right", "--model",
            str(root / "model.safetensors"), "--device", "cpu", "--workers", "0", "--no-progress", "--store",
            str(store), *extra]


def _bytes(store):
    return {f"{side}/{name}": (store / side / name).read_bytes() for side in ("database", "queries")
            for name in ("descriptors.npy", "status.npy", "names.txt")}


def _torchrun(root, store, *extra):
    if not TORCHRUN.exists():
        pytest.skip("torchrun not installed beside the interpreter")
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "netvlad.cli.main", "-q",
               *_args(root, store, *extra)]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker with RANK=rank (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != parent:
                continue
            if f"RANK={rank}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


@pytest.mark.slow
def test_two_processes_write_the_bytes_of_one_and_survive_a_killed_rank(setup, tmp_path):
    assert main(_args(setup, tmp_path / "one", "--batch-size", "3")) == 0
    two = _torchrun(setup, tmp_path / "two", "--batch-size", "2")
    assert two.wait(timeout=300) == 0, two.stdout.read()
    assert _bytes(tmp_path / "one") == _bytes(tmp_path / "two")
    assert DescriptorStore.open(tmp_path / "two" / "database").shards == 2

    if not sys.platform.startswith("linux"):
        pytest.skip("finding a torchrun worker by rank needs /proc")
    run = _torchrun(setup, tmp_path / "killed", "--batch-size", "1")
    status, deadline = tmp_path / "killed" / "database" / "status.npy", time.monotonic() + 240
    while time.monotonic() < deadline:  # kill rank 1 once it has written a row of its half, before it ends
        if status.is_file() and (np.load(status)[12:] != PENDING).any():
            os.kill(_rank_pid(run.pid, 1), signal.SIGKILL)
            break
        time.sleep(0.005)
    assert run.wait(timeout=120) != 0
    left = DescriptorStore.open(tmp_path / "killed" / "database")
    assert 0 < left.num_done < len(left), "the kill came too late to test a resume"
    rerun = _torchrun(setup, tmp_path / "killed", "--batch-size", "2")
    assert rerun.wait(timeout=300) == 0, rerun.stdout.read()
    assert _bytes(tmp_path / "one") == _bytes(tmp_path / "killed")


def test_shard_jobs_then_evaluate_reads_the_store(setup, tmp_path, capsys):
    assert main(_args(setup, tmp_path / "s", "--shard", "1/2")) == 0
    assert "rows pending (shard 1/2 done; run the other shards)" in capsys.readouterr().out
    assert main(_args(setup, tmp_path / "s", "--shard", "0/3")) == 1  # another plan, store unfinished
    assert main(_args(setup, tmp_path / "s", "--shard", "0/2")) == 0
    assert "24 of 24 descriptors" in capsys.readouterr().out
    evaluate = ["evaluate", str(setup), "--database", "day_left", "--queries", "day_right", "--frame-tolerance", "2",
                "--model", str(setup / "model.safetensors"), "--device", "cpu", "--workers", "0", "--no-progress",
                "--store", str(tmp_path / "s")]
    assert main(evaluate) == 0
    assert "R@1" in capsys.readouterr().out


@pytest.mark.parametrize("shard", ["3/2", "x"])
def test_bad_shard_names_the_form(setup, tmp_path, capsys, shard):
    with pytest.raises(SystemExit):
        main(_args(setup, tmp_path / "s", "--shard", shard))
    assert "I/N" in capsys.readouterr().err


def test_missing_shared_folder_is_named(setup, tmp_path, caplog):
    store = tmp_path / "not-mounted" / "run" / "store"
    assert main(_args(setup, store, "--shard", "0/2")) == 1
    assert f"{store.parent}: no such folder" in caplog.text and not store.parent.exists()


def test_help_documents_torchrun_and_shard(capsys):
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    text = capsys.readouterr().out
    assert "torchrun --nproc_per_node" in text and "--shard I/N" in text
