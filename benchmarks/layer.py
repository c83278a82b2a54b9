"""NetVLAD layer: forward+backward time and peak memory, matrix-product form vs a per-cluster loop.

The loop is the formulation of the popular public ports (one residual tensor per cluster), written here
from the formula V(:, k) = Σ_i a_k(x_i)(x_i − c_k). Both run side by side in this one process (time) and in
fresh subprocesses (peak resident memory added by one forward+backward), at batch 4, D=512, K=64.

    python benchmarks/layer.py [--repeats 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time

import torch
import torch.nn.functional as F

from netvlad.nn import NetVLAD

SIZES = ((30, 40), (60, 80))


def loop_netvlad(x: torch.Tensor, layer: NetVLAD) -> torch.Tensor:
    """Per-cluster loop with explicit residual tensors, as in pytorch-NetVlad / the DVG benchmark."""
    batch, dim = x.shape[:2]
    x = F.normalize(x, p=2, dim=1)
    assign = F.softmax(F.conv2d(x, layer.conv.weight, layer.conv.bias).view(batch, layer.num_clusters, -1), dim=1)
    flat = x.view(batch, dim, -1)
    vlad = []
    for k in range(layer.num_clusters):
        residual = flat - layer.centroids[k].view(1, dim, 1)  # (B, D, N) per cluster
        vlad.append((residual * assign[:, k : k + 1, :]).sum(dim=-1))
    vlad = F.normalize(torch.stack(vlad, dim=1), p=2, dim=2)
    return F.normalize(vlad.flatten(1), p=2, dim=1)


IMPLEMENTATIONS = {"matmul (ours)": lambda x, layer: layer(x), "per-cluster loop": loop_netvlad}


def make(size, device, seed=0):
    torch.manual_seed(seed)
    layer = NetVLAD(64, 512).to(device)
    x = torch.randn(4, 512, *size, device=device, requires_grad=True)
    return layer, x


def step(name, layer, x):
    out = IMPLEMENTATIONS[name](x, layer)
    out.square().sum().backward()


def time_ms(size, device, repeats) -> dict[str, float]:
    """Median milliseconds per step; the implementations alternate so that load changes hit both alike."""
    setups = {name: make(size, device) for name in IMPLEMENTATIONS}
    times = {name: [] for name in IMPLEMENTATIONS}
    for round_ in range(repeats + 1):
        for name, (layer, x) in setups.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(name, layer, x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if round_:  # round 0 is the warm-up
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * sorted(t)[len(t) // 2] for name, t in times.items()}


def peak_mb(name, size, device) -> float:
    """Peak memory added by one forward+backward: CUDA allocator peak, or max RSS growth in a fresh process."""
    if device.type == "cuda":
        layer, x = make(size, device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(name, layer, x)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    code = (f"import sys,json;sys.argv=['x'];import benchmarks.layer as b;print(json.dumps(b._child({name!r},"
            f"{tuple(size)!r})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _child(name, size):
    """Run in a fresh process: resident memory sampled every 0.2 ms during one step, minus the level before."""
    torch.set_num_threads(1)
    layer, x = make(size, torch.device("cpu"))
    step(name, layer, make((2, 2), torch.device("cpu"))[1][:, :, :2, :2])  # load kernels before the baseline
    before, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    step(name, layer, x)
    done.set()
    sampler.join()
    return max(peak[0], _rss_mb()) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"NetVLAD forward+backward, batch 4, D=512, K=64, device={device}, torch {torch.__version__}, "
          f"threads={torch.get_num_threads()}")
    print(f"{'map':>7} {'implementation':>18} {'time ms':>9} {'peak MiB':>9} {'speed-up':>9} {'memory':>7}")
    for size in SIZES:
        times = time_ms(size, device, args.repeats)
        rows = {name: (times[name], peak_mb(name, size, device)) for name in IMPLEMENTATIONS}
        ref_t, ref_m = rows["per-cluster loop"]
        for name, (t, m) in rows.items():
            print(f"{size[0]}x{size[1]:<4} {name:>18} {t:9.1f} {m:9.1f} {ref_t / t:8.1f}x {m / ref_m:6.2f}x")


if __name__ == "__main__":
    main()
