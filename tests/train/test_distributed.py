"""torchrun with 2 CPU processes (gloo) trains the same weights as 1 process, and only rank 0 writes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from netvlad.train.distributed import DistInfo, shard

from .conftest import TINY, make_tiny_dataset


def test_shards_cover_every_index_once():
    parts = [shard(11, DistInfo(rank, 3)) for rank in range(3)]
    assert sorted(int(i) for p in parts for i in p) == list(range(11))


@pytest.mark.slow
@pytest.mark.parametrize("normalization", ["sum", "violating_mean"])  # violating_mean: a count over both ranks
def test_two_processes_match_one(tmp_path, normalization):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside the interpreter")
    root = make_tiny_dataset(tmp_path / "data").database.root
    config = tmp_path / "tiny.yaml"
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}
    config.write_text(yaml.safe_dump(values | {"epochs": 1, "cache_dtype": "float32", "checkpoint_every": 100,
                                               "whitening_dim": 4,  # fitted on rank 0, sent to rank 1
                                               "loss_normalization": normalization}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NETVLAD_OFFLINE": "1"}
    args = ["train", str(root), "--database", "database", "--queries", "queries", "--no-progress", "--device", "cpu",
            "--config", str(config)]
    one, two = tmp_path / "one", tmp_path / "two"
    logs = tmp_path / "logs"  # torchrun's own files (by default a new temporary folder that nothing removes)
    commands = ([sys.executable, "-m", "netvlad.cli.main", "-q", *args, "--out", str(one)],
                [str(torchrun), "--standalone", "--nproc_per_node=2", "--log-dir", str(logs), "-m",
                 "netvlad.cli.main", "-q", *args, "--out", str(two)])
    runs = [subprocess.Popen(command, env=env) for command in commands]  # at once: one thread a process
    try:
        assert [run.wait(timeout=600) for run in runs] == [0, 0], "a training run failed (its output is above)"
    finally:
        for run in runs:
            run.kill()
    a, b = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    init = load_file(one / "init.safetensors")
    assert any(not torch.equal(a[k], init[k]) for k in a), "training changed nothing; the comparison would be empty"
    for key in a:  # the same update up to float summation order: ‖a − b‖ ≪ ‖a − init‖ (whitening: ≪ ‖a‖)
        update = (a[key].double() - init[key].double()).norm() if key in init else a[key].double().norm()
        assert (a[key].double() - b[key].double()).norm() <= 1e-3 * update + 1e-6, key
    # one cache shared by both ranks, with its per-row checksums
    assert sorted(p.name for p in (two / "cache").iterdir()) == ["descriptors.crc32.npy", "descriptors.npy"]
    events = [line for line in (two / "log.jsonl").read_text().splitlines() if '"done"' in line]
    assert len(events) == 1  # only rank 0 writes
