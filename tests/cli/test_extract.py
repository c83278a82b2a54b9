"""`netvlad extract` (and `evaluate` through it): two torchrun processes (gloo, CPU) write the bytes one process
writes, survive a killed rank, and bad input (shard text, plan, missing shared folder) gets a clear error."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from netvlad.cli.main import main
from netvlad.extract.store import PENDING, DescriptorStore
from tests.conftest import gardens_point_with_model

TORCHRUN = Path(sys.executable).with_name("torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NETVLAD_OFFLINE": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """24 + 24 Gardens Point photographs and a tiny checkpoint (random MobileNetV2 + GeM at 96×128)."""
    return gardens_point_with_model(tmp_path_factory.mktemp("gp"), 8, (96, 128))


def _args(root, store, *extra):
    return ["extract", str(root), "--database", "day_left", "--queries", "day_right", "--model",
            str(root / "model.safetensors"), "--device", "cpu", "--workers", "0", "--no-progress", "--store",
            str(store), *extra]


def _bytes(store):
    return {f"{side}/{name}": (store / side / name).read_bytes() for side in ("database", "queries")
            for name in ("descriptors.npy", "status.npy", "names.txt")}


def _torchrun(arguments, logs: Path):
    """``netvlad -q ARGUMENTS`` in 2 gloo processes, stdout and stderr together; torchrun's own files in ``logs``
    (without it, a new folder in the system's temporary folder that nothing removes)."""
    if not TORCHRUN.exists():
        pytest.skip("torchrun not installed beside the interpreter")
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "--log-dir", str(logs), "-m", "netvlad.cli.main",
               "-q", *arguments]
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
    two = _torchrun(_args(setup, tmp_path / "two", "--batch-size", "2"), tmp_path / "logs")
    assert two.wait(timeout=300) == 0, two.stdout.read()
    assert _bytes(tmp_path / "one") == _bytes(tmp_path / "two")
    assert DescriptorStore.open(tmp_path / "two" / "database").shards == 2

    if not sys.platform.startswith("linux"):
        pytest.skip("finding a torchrun worker by rank needs /proc")
    run = _torchrun(_args(setup, tmp_path / "killed", "--batch-size", "1"), tmp_path / "logs")
    status, deadline = tmp_path / "killed" / "database" / "status.npy", time.monotonic() + 240
    while time.monotonic() < deadline:  # kill rank 1 once it has written a row of its half, before it ends
        pid = _rank_pid(run.pid, 1) if status.is_file() and (np.load(status)[12:] != PENDING).any() else None
        if pid is not None:  # (None: not found in /proc at this instant; look again)
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    assert run.wait(timeout=120) != 0
    left = DescriptorStore.open(tmp_path / "killed" / "database")
    assert 0 < left.num_done < len(left), "the kill came too late to test a resume"
    rerun = _torchrun(_args(setup, tmp_path / "killed", "--batch-size", "2"), tmp_path / "logs")
    assert rerun.wait(timeout=300) == 0, rerun.stdout.read()
    assert _bytes(tmp_path / "one") == _bytes(tmp_path / "killed")


def _evaluate(root, output, *extra):
    return ["evaluate", str(root), "--database", "day_left", "--queries", "day_right", "--frame-tolerance", "2",
            "--model", str(root / "model.safetensors"), "--device", "cpu", "--workers", "0", "--no-progress",
            "--no-pictures", "--output", str(output), *extra]


def _report(output):
    """The JSON summary and per-query CSV an evaluation wrote."""
    return output.read_text(), output.with_name(output.stem + "_queries.csv").read_text()


@pytest.mark.slow
def test_evaluate_under_torchrun_gives_the_one_process_result_and_store(setup, tmp_path, capsys):
    assert main(_evaluate(setup, tmp_path / "one.json", "--store", str(tmp_path / "one"), "--batch-size", "3")) == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("R@1"):printed.index("wrote")]
    command = _evaluate(setup, tmp_path / "two.json", "--store", str(tmp_path / "two"), "--batch-size", "2")
    two = _torchrun(command, tmp_path / "logs")
    out = two.stdout.read()
    assert two.wait(timeout=300) == 0, out
    assert out.count("24 queries, 24 database images") == 1 and table in out  # rank 0 alone prints the table
    assert _report(tmp_path / "one.json") == _report(tmp_path / "two.json")
    assert _bytes(tmp_path / "one") == _bytes(tmp_path / "two")
    assert DescriptorStore.open(tmp_path / "two" / "queries").shards == 2

    no_store = _torchrun(_evaluate(setup, tmp_path / "three.json"), tmp_path / "logs")
    out = no_store.stdout.read()
    assert no_store.wait(timeout=300) != 0
    assert "under torchrun netvlad evaluate needs --store DIR" in out, out


def test_shard_jobs_then_evaluate_reads_the_store(setup, tmp_path, capsys, caplog):
    assert main(_args(setup, tmp_path / "s", "--shard", "1/2")) == 0
    assert "rows pending (shard 1/2 done; run the other shards)" in capsys.readouterr().out
    assert main(_args(setup, tmp_path / "s", "--shard", "0/3")) == 1  # another plan, store unfinished
    assert main(_args(setup, tmp_path / "s", "--shard", "0/2")) == 0
    assert "24 of 24 descriptors" in capsys.readouterr().out
    written = _bytes(tmp_path / "s")
    with caplog.at_level(logging.INFO, logger="netvlad.extract.descriptors"):
        assert main(_evaluate(setup, tmp_path / "s.json", "--store", str(tmp_path / "s"))) == 0
    assert caplog.text.count("all 24 descriptors of this process already extracted") == 2  # nothing extracted
    assert _bytes(tmp_path / "s") == written
    from_store = capsys.readouterr().out
    assert main(_evaluate(setup, tmp_path / "plain.json")) == 0  # one process, descriptors in memory
    plain = capsys.readouterr().out
    assert "R@1" in from_store and from_store.split("wrote")[0] == plain.split("wrote")[0]
    assert _report(tmp_path / "s.json") == _report(tmp_path / "plain.json")


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
    assert "evaluate (--store DIR), index build (its OUT/descriptors) and export hloc" in text


def test_truncated_store_is_re_extracted_by_evaluate_never_zero_filled(setup, tmp_path, capsys):
    assert main(_args(setup, tmp_path / "s")) == 0
    written = _bytes(tmp_path / "s")
    path = tmp_path / "s" / "database" / "descriptors.npy"
    os.truncate(path, path.stat().st_size // 2)  # an interrupted copy
    assert main(["store", "verify", str(tmp_path / "s")]) == 1
    assert len(DescriptorStore.open(tmp_path / "s" / "database").pending()) == 13  # half lost (one row cut)
    os.truncate(path, path.stat().st_size // 2)
    assert main(_evaluate(setup, tmp_path / "s.json", "--store", str(tmp_path / "s"))) == 0
    assert _bytes(tmp_path / "s") == written  # the lost rows were extracted again, to the same bytes
    capsys.readouterr()
    os.truncate(path, path.stat().st_size - 1)
    from netvlad.errors import BadInputError
    with pytest.raises(BadInputError, match="descriptors.npy: is short"):
        DescriptorStore.open(tmp_path / "s" / "database")
