"""A tiny generated geo-tagged dataset and a tiny training config, so training tests run in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.train import TrainConfig

PLACES = 12
SPACING = 20.0  # metres between places: only the same place lies within 10 m


def make_tiny_dataset(root: Path, places: int = PLACES, size: int = 64, seed: int = 0) -> GeoDataset:
    """Per place a random texture (database) and a shifted, washed-out, noisy copy 2 m away (query).

    Written as a sequence folder (``database/pNNN.png``, ``queries/pNNN.png``), so the CLI reads it too.
    """
    rng = np.random.default_rng(seed)
    for side in ("database", "queries"):
        (root / side).mkdir(parents=True, exist_ok=True)
    db_names, q_names = [], []
    for i in range(places):
        texture = rng.integers(0, 256, (size // 8, size // 8, 3)).astype(np.uint8)
        base = np.asarray(Image.fromarray(texture).resize((size, size), Image.BILINEAR), dtype=np.float64)
        shifted = np.roll(base, (rng.integers(-6, 7), rng.integers(-6, 7)), axis=(0, 1))
        query = np.clip(0.6 * shifted + 40 + rng.normal(0, 30, base.shape), 0, 255)
        for side, array, names in (("database", base, db_names), ("queries", query, q_names)):
            name = f"{side}/p{i:03d}.png"
            Image.fromarray(array.astype(np.uint8)).save(root / name)
            names.append(name)
    x = np.arange(places) * SPACING
    db = ImageList(root, tuple(db_names), np.stack([x, np.zeros(places)], 1))
    q = ImageList(root, tuple(q_names), np.stack([x + 2.0, np.zeros(places)], 1))
    return GeoDataset("tiny", db, q)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> GeoDataset:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


TINY = dict(pretrained=False, resize="fixed", size=(64, 64), num_clusters=4, cluster_descriptors=400,
            cluster_per_image=4, cluster_images=PLACES, negative_samples=6, num_negatives=3, cache_refresh=6,
            margin=0.5, batch_tuples=2, lr=1e-3, lr_step=1, tensorboard=False, checkpoint_every=1, batch_size=12)


def tiny_config(**overrides) -> TrainConfig:
    """mobilenet_v2 with random weights at 64×64, K=4: a training run of a few seconds."""
    values = TINY | {"epochs": 2}
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every training test runs on one thread (see the root conftest's ``one_thread``)."""
