"""Upright billboards standing in the street: trees and lamps (fixed), vehicles and pedestrians (per view)."""

from __future__ import annotations

import numpy as np

from netvlad.data.synthetic.facade import SIGN_COLOURS, Canvas
from netvlad.data.synthetic.materials import Material

BODY_COLOURS = np.array([(200, 200, 205), (30, 30, 35), (160, 20, 25), (30, 60, 140), (120, 120, 125),
                         (230, 230, 225), (40, 90, 50), (200, 170, 40)], dtype=np.float32)


def _disc(canvas: Canvas, rng, cx: float, cy: float, radius: float, colour, material: int) -> np.ndarray:
    """Fill a ragged disc (metres); return its mask."""
    rr, cc = np.mgrid[0:canvas.material.shape[0], 0:canvas.material.shape[1]]
    d2 = (rr / canvas.ppm - cy) ** 2 + (cc / canvas.ppm - cx) ** 2
    mask = d2 < radius**2 * rng.uniform(0.75, 1.0, rr.shape)
    canvas.albedo[mask] = np.asarray(colour, np.float32) * rng.uniform(0.7, 1.2, (int(mask.sum()), 1))
    canvas.material[mask] = material
    canvas.aux[mask] = rng.integers(0, 256, int(mask.sum()), dtype=np.uint8)
    return mask


def make_tree(rng: np.random.Generator, ppm: int) -> Canvas:
    """A tree: trunk and a crown of a few overlapping blobs, 4–6 m wide and 6–10 m tall."""
    width, height = rng.uniform(4.0, 6.0), rng.uniform(6.0, 10.0)
    canvas = Canvas.empty(int(width * ppm), int(height * ppm), ppm)
    crown_base = rng.uniform(2.2, 3.5)
    canvas.rect(width / 2 - 0.18, 0, width / 2 + 0.18, crown_base + 1.5, (75, 55, 40), Material.WALL)
    green = (50 + rng.integers(30), 105 + rng.integers(40), 35 + rng.integers(20))
    for _ in range(int(rng.integers(3, 6))):
        radius = rng.uniform(1.0, width / 2.6)
        cx = width / 2 + rng.uniform(-1, 1) * (width / 2 - radius)
        cy = rng.uniform(crown_base + radius, max(crown_base + radius, height - radius))
        _disc(canvas, rng, cx, cy, radius, green, Material.VEGETATION)
    return canvas


def make_lamp(rng: np.random.Generator, ppm: int) -> Canvas:
    """A street lamp 5–6 m tall with a glowing head."""
    height = rng.uniform(5.0, 6.0)
    canvas = Canvas.empty(int(1.2 * ppm), int(height * ppm), ppm)
    canvas.rect(0.5, 0, 0.7, height - 0.3, (45, 45, 50), Material.WALL)
    canvas.rect(0.2, height - 0.6, 1.0, height - 0.2, (250, 240, 200), Material.LAMP)
    return canvas


def make_vehicle(rng: np.random.Generator, ppm: int) -> Canvas:
    """A car or van seen from the side: body, windows, wheels and lights."""
    van = rng.random() < 0.25
    width, height = (rng.uniform(5.0, 6.5), rng.uniform(2.3, 2.9)) if van else (rng.uniform(3.8, 4.6), 1.5)
    canvas = Canvas.empty(int(width * ppm), int(height * ppm), ppm)
    body = BODY_COLOURS[rng.integers(len(BODY_COLOURS))]
    canvas.rect(0, 0.3, width, height * 0.6, body, Material.BODY)
    top0, top1 = (0.05, 0.95) if van else (rng.uniform(0.15, 0.3), rng.uniform(0.7, 0.85))
    canvas.rect(width * top0, height * 0.6, width * top1, height, body * 0.9, Material.BODY)
    canvas.rect(width * top0 + 0.15, height * 0.63, width * top1 - 0.15, height - 0.1, (35, 40, 50), Material.BODY)
    for x in (0.2 * width, 0.8 * width):
        _disc(canvas, rng, x, 0.35, 0.35, (20, 20, 20), Material.BODY)
    canvas.rect(0, height * 0.4, 0.2, height * 0.55, (255, 240, 200), Material.LAMP)
    canvas.rect(width - 0.2, height * 0.4, width, height * 0.55, (255, 60, 40), Material.LAMP)
    return canvas


def make_pedestrian(rng: np.random.Generator, ppm: int) -> Canvas:
    """A person about 1.6–1.9 m tall: legs, coat, head."""
    height = rng.uniform(1.6, 1.9)
    canvas = Canvas.empty(int(0.7 * ppm), int(height * ppm), ppm)
    coat = SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))] * rng.uniform(0.5, 1.0)
    canvas.rect(0.2, 0, 0.5, height * 0.45, (40, 40, 60), Material.BODY)
    canvas.rect(0.1, height * 0.45, 0.6, height * 0.85, coat, Material.BODY)
    _disc(canvas, rng, 0.35, height * 0.92, 0.12, (200, 160, 130), Material.BODY)
    return canvas
