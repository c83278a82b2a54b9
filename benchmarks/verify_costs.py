"""Costs of Patch-NetVLAD re-ranking for benchmarks/verify.py: re-ranking seconds per query on random patch stores,
peak memory of one VGG16 map's patch descriptors (in a fresh process), store bytes per 640×480 VGG16 image.

    python benchmarks/verify_costs.py --memory-child PRESET   # what verify.py runs in a subprocess
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from netvlad.match.verify import get_preset
from netvlad.match.verify.patch_store import create_patch_store
from netvlad.match.verify.rerank import verify_shortlist
from netvlad.nn.patch import patch_netvlad, window_grid

PRESETS = ("performance", "speed", "storage")


def fill_store(extractor, patches: list, folder: Path):
    """A float16 patch store of ``patches`` (rewritten each run)."""
    shutil.rmtree(folder, ignore_errors=True)
    store = create_patch_store(extractor, [f"{i}" for i in range(len(patches))], folder, patches[0].grids)
    for i0 in range(0, len(patches), 16):
        part = patches[i0:i0 + 16]
        store.write(np.arange(i0, i0 + len(part)), part)
    return store


def timing(count: int, top: int, cache: Path, grid=(15, 20)) -> dict:
    """Mean seconds to re-rank a top-``top`` shortlist per query, per preset, side by side, on stores of random unit
    patches shaped as a 640×480 image's MobileNetV2 map (``grid`` cells): reading, matching and scoring cost the
    same whatever the values (RANSAC draws and reprojects all padded matches)."""
    from netvlad.match.verify.patches import Patches
    from netvlad.nn.functional import l2_normalize

    gen = torch.Generator().manual_seed(0)

    def random_patches(preset):
        grids = [window_grid(*grid, s, preset.stride) for s in preset.sizes]
        return Patches([l2_normalize(torch.randn(r * c, preset.dim, generator=gen), dim=1) for r, c in grids], grids)

    class Fake:  # what create_patch_store reads from an extractor
        def __init__(self, preset):
            self.preset, self.dim = preset, preset.dim
            self.model = type("M", (), {"fingerprint": staticmethod(lambda: "random")})()

    out = {}
    for name in PRESETS:
        preset = get_preset(name)
        store = fill_store(Fake(preset), [random_patches(preset) for _ in range(top)], cache / f"timing_{name}")
        queries = [random_patches(preset) for _ in range(count)]
        start = time.perf_counter()
        for p in queries:
            verify_shortlist(p, np.arange(top), np.linspace(0, 1, top), store.read, preset, gen)
        out[name] = (time.perf_counter() - start) / count
        shutil.rmtree(cache / f"timing_{name}", ignore_errors=True)
    return out


def memory_child(name: str) -> None:
    """Print the peak resident MiB added by the patch descriptors of preset ``name`` for one 480×640 VGG16 map."""
    p = get_preset(name)
    torch.manual_seed(0)
    x, weight, centroids = torch.randn(1, 512, 30, 40).relu_(), torch.randn(64, 512), torch.randn(64, 512)
    projection = (torch.randn(p.dim, 64 * 512).div_(181.0), torch.zeros(p.dim))  # in place: no 2nd copy at start
    with torch.no_grad():  # warm-up on a tiny map: the kernels' code pages are not the layer's memory
        patch_netvlad(x[..., :9, :9], weight, None, centroids, 8, p.stride, True, projection)
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak (VmHWM) to the current resident size
    base = _status_kib("VmRSS")
    with torch.no_grad():
        for size in p.sizes:
            patch_netvlad(x, weight, None, centroids, size, p.stride, True, projection)
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - base) / 1024}))


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field, KiB."""
    line = next(t for t in Path("/proc/self/status").read_text().splitlines() if t.startswith(field + ":"))
    return int(line.split()[1])


def memory(name: str) -> float:
    """:func:`memory_child` in a fresh subprocess (the whitening matrix itself, the model's, is not counted)."""
    out = subprocess.run([sys.executable, __file__, "--memory-child", name], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.splitlines()[-1])["peak_mib"]


def vgg_bytes(preset: str) -> int:
    """Patch store bytes per 480×640 image for a VGG16 map (30×40 cells)."""
    p = get_preset(preset)
    return sum(2 * (2 + int(np.prod(window_grid(30, 40, s, p.stride))) * p.dim) for s in p.sizes)


def print_costs(report: dict, top: int) -> None:
    seconds = report["seconds_per_query"]
    print(f"\n| preset | re-rank s/query (top {top}) | vs speed | store B/image, VGG16 480×640 | peak MiB |")
    print("|---|---:|---:|---:|---:|")
    for name in PRESETS:
        print(f"| {name} | {seconds[name]:.3f} | {seconds[name] / seconds['speed']:.1f}× | "
              f"{report['store_bytes_vgg16_480x640'][name]:,} | {report['memory_mib_vgg16_480x640'][name]} |")


if __name__ == "__main__" and sys.argv[1:2] == ["--memory-child"]:
    memory_child(sys.argv[2])
