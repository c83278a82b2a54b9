"""Small images and a tiny real model shared by the extraction, matching and evaluation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from tests.train.conftest import tiny_dataset  # noqa: F401 - the training images test_clusters reads


def write_images(folder: Path, count: int, size=(48, 36), seed: int = 0) -> list[str]:
    """Write ``count`` random RGB PNGs of ``size`` (w, h) pixels; return their names."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / name)
        names.append(name)
    return names


@pytest.fixture
def tiny_model() -> PlaceModel:
    """MobileNetV2 with random weights, GeM pooling, images resized to 64 px (fast on CPU)."""
    config = ModelConfig(backbone="mobilenet_v2", pool="gem", preprocessing=Preprocessing("longest", (64,)))
    return PlaceModel(config, pretrained=False).eval()
