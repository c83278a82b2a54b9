"""Shared fixtures: seeded RNG, and the real photographs in ../shared/data (skipped where absent)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from netvlad.numerics import PINNED
from netvlad.threads import torch_threads

REPO = Path(__file__).resolve().parents[1]
os.environ["NETVLAD_ENGINE"] = "torch"  # commands default to torch unless a test names --engine (also in
# module-scoped fixtures, set up before any function-scoped one)
SHARED_DATA = Path(os.environ.get("NETVLAD_SHARED_DATA", REPO.parent / "shared" / "data"))
# the kernel switches as the session started: `netvlad demo` run in-process (deterministic by default) sets them
# in os.environ, where later tests' reports (and torchrun children) would read them
_KERNEL_SWITCHES = {name: os.environ.get(name) for name in PINNED}


@pytest.fixture(autouse=True)
def _kernel_switches_restored():
    """Each test leaves the kernel-switch variables as the session found them."""
    yield
    for name, value in _KERNEL_SWITCHES.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value



@pytest.fixture(autouse=True)
def _logger_levels_restored():
    """Each test leaves netvlad's loggers at the levels it found (a benchmark run in-process quietens some)."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if name.startswith("netvlad")]
    levels = {logger: logger.level for logger in loggers}
    yield
    for logger, level in levels.items():
        logger.setLevel(level)
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        if name.startswith("netvlad.") and logger not in levels:
            logger.setLevel(logging.NOTSET)

def shared_dataset(name: str) -> Path:
    """Path of ../shared/data/<name>, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real photographs not found at {path} (set NETVLAD_SHARED_DATA to the shared data folder)")
    return path


def copy_sequence(source: Path, root: Path, sides: tuple[str, ...], names) -> Path:
    """``root`` holding a copy of ``names`` from each ``sides`` sub-folder of ``source`` (a small sequence)."""
    for side in sides:
        (root / side).mkdir(parents=True)
        for name in names:
            shutil.copy(source / side / name, root / side / name)
    return root


def gardens_point_with_model(root: Path, step: int, size: tuple[int, int]) -> Path:
    """``root`` holding every ``step``-th Gardens Point frame of day_left and day_right (of the first 192) and
    ``model.safetensors``: a random-weight MobileNetV2 + GeM at ``size`` (H, W). Skips where the data is absent."""
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model

    copy_sequence(shared_dataset("gardens_point"), root, ("day_left", "day_right"),
                  [f"Image{i:03d}.jpg" for i in range(0, 192, step)])
    model = PlaceModel(ModelConfig(pool="gem", preprocessing=Preprocessing("fixed", size)), pretrained=False)
    save_model(model, root / "model.safetensors")
    return root


@pytest.fixture
def gardens_point() -> Path:
    return shared_dataset("gardens_point")


@pytest.fixture
def nordland() -> Path:
    return shared_dataset("nordland")


@pytest.fixture
def tokyo_pair() -> Path:
    return shared_dataset("tokyo_pair")


@pytest.fixture(scope="session")
def _onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session", autouse=True)
def _kmeans_cache_outside_home(tmp_path_factory):
    """Module- and session-scoped fixtures cache k-means centroids in a temporary folder, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NETVLAD_CLUSTER_CACHE", str(tmp_path_factory.mktemp("kmeans-cache")))
        yield


@pytest.fixture(autouse=True)
def _seed_and_offline(monkeypatch, _onnx_cache, tmp_path_factory):
    torch.manual_seed(0)
    monkeypatch.setenv("NETVLAD_OFFLINE", "1")  # tests never try the network
    monkeypatch.setenv("NETVLAD_CACHE", str(_onnx_cache))  # ONNX exports never land in the user's cache
    # each test clusters afresh: k-means centroids cached by an earlier test on the same images are not reused
    monkeypatch.setenv("NETVLAD_CLUSTER_CACHE", str(tmp_path_factory.mktemp("kmeans-cache")))


@pytest.fixture
def one_thread():
    """Tiny models run fastest (and identically) on one thread, especially on a shared CPU."""
    with torch_threads(1):
        yield


@pytest.fixture
def two_threads():
    """Two threads, where behaviour depends on more than one (how the CPU kernels split their work)."""
    with torch_threads(2):
        yield


@pytest.fixture(scope="session")
def gardens_point_maps():
    """Real feature maps and the NetVLAD layer that pools them: (maps (4, 1280, 5, 7) float32 of day_right
    Image050 and day_left Image046, Image050, Image120 at 160×224, ImageNet MobileNetV2; NetVLAD K = 8, its
    deterministic initial centroids)."""
    from netvlad.data.images import load_image
    from netvlad.models import ModelConfig, PlaceModel

    root = shared_dataset("gardens_point")
    paths = [root / "day_right" / "Image050.jpg"] + [root / "day_left" / f"Image{i:03d}.jpg" for i in (46, 50, 120)]
    model = PlaceModel(ModelConfig(num_clusters=8)).eval()
    with torch.no_grad():
        maps = model.features(torch.stack([load_image(p, "fixed", (160, 224)) for p in paths]))
    return maps, model.pool


@pytest.fixture(scope="session")
def gardens_point_descriptors():
    """Real single-frame descriptors of the Gardens Point walk for the sequence tests: (dataset day_left →
    day_right ±2 frames, database descriptors (200, 81920), query descriptors), ImageNet MobileNetV2 + NetVLAD
    (K = 64, its deterministic initial centroids) at 192×336."""
    from netvlad.data.readers import open_dataset
    from netvlad.eval.recall import describe
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing

    torch.manual_seed(0)
    dataset = open_dataset(shared_dataset("gardens_point"), database="day_left", queries="day_right",
                           frame_tolerance=2)
    model = PlaceModel(ModelConfig(preprocessing=Preprocessing("fixed", (192, 336)))).eval()
    db, _, _ = describe(model, dataset.database, None, batch_size=25)
    queries, _, _ = describe(model, dataset.queries, None, batch_size=25)
    return dataset, db, queries
