"""`netvlad.parallel`: a process that leaves its group ends gloo's threads there, not at interpreter exit."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# one rank: join, import torchvision after the group exists (as building a backbone does), one collective, leave,
# then name the threads still running in this process
RANK = """
import os, torch
from netvlad.parallel import broadcast_module, init_distributed, shutdown
info = init_distributed(torch.device("cpu"))
import torchvision  # noqa: F401
broadcast_module(torch.nn.Linear(2, 2), info)
shutdown(info)
names = sorted(open(f"/proc/self/task/{task}/comm").read().strip() for task in os.listdir("/proc/self/task"))
print("gloo threads after shutdown:", [name for name in names if "gloo" in name])
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="naming a process's threads needs Linux /proc")
def test_shutdown_ends_gloo_threads_even_after_torchvision_is_imported_in_the_group():
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    ranks = [subprocess.Popen([sys.executable, "-c", RANK], env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in range(2)]
    outputs = [rank.communicate(timeout=120)[0] for rank in ranks]
    for rank, out in zip(ranks, outputs, strict=True):
        assert rank.returncode == 0, out
        assert "gloo threads after shutdown: []" in out, out
