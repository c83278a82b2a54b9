"""Turn rendered buffers into an image under a condition: sky, light, season, lit windows, weather, noise."""

from __future__ import annotations

import numpy as np

from netvlad.data.synthetic.conditions import Condition
from netvlad.data.synthetic.materials import Material
from netvlad.data.synthetic.render import Buffers

WARM = np.array([1.0, 0.82, 0.5], np.float32)


def sun_direction(condition: Condition) -> np.ndarray:
    """Horizontal unit vector towards the sun."""
    a = np.radians(condition.sun_azimuth)
    return np.array([np.cos(a), np.sin(a)])


def _season(buf: Buffers, albedo: np.ndarray, season: str) -> None:
    """Recolour vegetation (autumn leaves, bare winter branches) and cover ground and roofs with snow in winter."""
    veg = buf.material == Material.VEGETATION
    lum = albedo[veg].mean(axis=1, keepdims=True) / 0.3
    aux = buf.aux[veg][:, None]
    if season == "autumn":
        albedo[veg] = lum * np.where(aux < 90, (0.55, 0.18, 0.08), (0.62, 0.38, 0.1))
    elif season == "winter":
        albedo[veg] = np.where(aux > 200, (0.85, 0.87, 0.9), lum * np.array((0.2, 0.17, 0.15)))
        snow = np.isin(buf.material, (Material.SIDEWALK, Material.ROOF, Material.MARKING))
        albedo[snow] = 0.88 * albedo[snow] / np.maximum(albedo[snow].mean(axis=1, keepdims=True), 1e-3) ** 0.05
        albedo[snow] = np.clip(albedo[snow] * 0.4 + 0.55, 0, 1)
        road = buf.material == Material.ROAD
        albedo[road] = albedo[road] * 1.6 + 0.05


def _sky(buf: Buffers, condition: Condition) -> np.ndarray:
    """(H, 1, 3) sky gradient from the horizon colour up to the zenith colour."""
    rows = np.arange(buf.albedo.shape[0])[:, None] + 0.5
    t = np.clip((buf.horizon - rows) / max(buf.horizon, 1.0), 0, 1) ** 0.7
    return (np.array(condition.sky_horizon) * (1 - t) + np.array(condition.sky_top) * t)[:, None, :]


def _weather(image: np.ndarray, condition: Condition, rng: np.random.Generator) -> np.ndarray:
    """Rain streaks and desaturation, or falling snow flakes."""
    h, w = image.shape[:2]
    if condition.rain:
        grey = image.mean(axis=2, keepdims=True)
        image = 0.6 * image + 0.4 * grey
        n = int(h * w / 120)
        r, c = rng.integers(0, h, n), rng.integers(0, w, n)
        for k in range(int(6 * h / 120)):
            rr, cc = np.clip(r + k, 0, h - 1), np.clip(c + k // 3, 0, w - 1)
            image[rr, cc] = image[rr, cc] * 0.6 + 0.3
    if condition.snowfall:
        n = int(h * w / 60)
        r, c = rng.integers(0, h, n), rng.integers(0, w, n)
        image[r, c] = 0.92
    return image


def shade(buf: Buffers, condition: Condition, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 image of the buffers lit by ``condition``."""
    albedo = buf.albedo.copy()
    _season(buf, albedo, condition.season)
    light = np.float32(condition.ambient) + np.float32(condition.sun) * np.clip(buf.facing, 0, 1)
    image = albedo * light[..., None] * np.array(condition.tint, np.float32)
    glass = buf.material == Material.GLASS
    image[glass] += 0.25 * condition.ambient * np.array(condition.sky_horizon, np.float32)
    if condition.lit_windows > 0:
        offset = int(rng.integers(0, 256))
        value = (buf.aux.astype(np.int64) + offset) % 256
        lit = glass & (value < condition.lit_windows * 256)
        image[lit] = WARM * (0.55 + 0.45 * (value[lit, None] % 7) / 6)
    emissive = np.isin(buf.material, (Material.SIGN, Material.LAMP))
    image[emissive] = np.maximum(image[emissive], albedo[emissive] * condition.emissive)
    sky = buf.material == Material.EMPTY
    image = np.where(sky[..., None], _sky(buf, condition).astype(np.float32), image)
    if condition.fog_distance > 0:
        alpha = 1 - np.exp(-buf.depth / np.float32(condition.fog_distance))[..., None]
        image = image * (1 - alpha) + np.array(condition.fog_colour, np.float32) * alpha
    image = _weather(image, condition, rng)
    image = image * (rng.uniform(0.85, 1.15) * (1 + rng.normal(0, 0.04, 3))).astype(np.float32)
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(condition.noise)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
