"""The city's layout: a grid of blocks lined with textured façades, trees and lamps (local metres, x east)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netvlad.data.synthetic import sprites
from netvlad.data.synthetic.city_config import CityConfig
from netvlad.data.synthetic.facade import Canvas, paint_building, paint_park

ATLAS_HEIGHT = 22.0  # metres of façade texture; anything above is sky
MIP = 4  # the coarse texture level averages MIP × MIP texels


@dataclass(frozen=True, eq=False)
class Atlas:
    """All façade textures side by side, bottom-up, at ``ppm`` texels per metre, plus a coarse level."""

    albedo: np.ndarray  # (H, W, 3) uint8
    material: np.ndarray  # (H, W) uint8
    aux: np.ndarray  # (H, W) uint8
    coarse: np.ndarray  # (H / MIP, W / MIP, 3) uint8: box-filtered albedo for distant walls
    ppm: int


@dataclass(frozen=True, eq=False)
class City:
    """Street centrelines, wall segments with their texture columns, and fixed props."""

    xs: np.ndarray  # (nx + 1,) x of north–south street centrelines, metres
    ys: np.ndarray  # (ny + 1,) y of east–west street centrelines, metres
    half_width: float  # street centreline to façade, metres
    walls: np.ndarray  # (S, 4) x0, y0, x1, y1: façade left to right as seen from the street
    normals: np.ndarray  # (S, 2) unit normals pointing into the street
    wall_u0: np.ndarray  # (S,) first atlas column of each wall
    wall_px: np.ndarray  # (S,) width of each wall's texture in texels
    atlas: Atlas
    props: np.ndarray  # (P, 2) positions of trees and lamps, metres
    prop_sprite: np.ndarray  # (P,) index into ``sprites``
    sprites: tuple[Canvas, ...]  # trees and lamps
    vehicles: tuple[Canvas, ...]  # sprites placed at random per view
    pedestrians: tuple[Canvas, ...]

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the street grid, metres."""
        return float(self.xs[0]), float(self.ys[0]), float(self.xs[-1]), float(self.ys[-1])


def street_grid(config: CityConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Centreline coordinates of the streets: block pitches drawn in ``config.block_size``."""
    lo, hi = config.block_size
    xs = np.concatenate([[0.0], np.cumsum(rng.uniform(lo, hi, config.blocks[0]))])
    ys = np.concatenate([[0.0], np.cumsum(rng.uniform(lo, hi, config.blocks[1]))])
    return np.round(xs, 1), np.round(ys, 1)


def _block_faces(xs: np.ndarray, ys: np.ndarray, hw: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(start, end, normal) of every block side that faces an interior street."""
    faces = []
    nx, ny = len(xs) - 1, len(ys) - 1
    for i in range(nx):
        for j in range(ny):
            x0, x1, y0, y1 = xs[i] + hw, xs[i + 1] - hw, ys[j] + hw, ys[j + 1] - hw
            sides = [((x0, y0), (x1, y0), (0, -1), j > 0), ((x1, y1), (x0, y1), (0, 1), j < ny - 1),
                     ((x1, y0), (x1, y1), (1, 0), i < nx - 1), ((x0, y1), (x0, y0), (-1, 0), i > 0)]
            faces += [(np.array(a), np.array(b), np.array(n, float)) for a, b, n, inner in sides if inner]
    return faces


def _split_face(rng: np.random.Generator, length: float) -> list[float]:
    """Building widths (metres) along a face of ``length`` metres."""
    widths, left = [], length
    while left > 0:
        w = rng.uniform(6.0, 16.0)
        w = left if left - w < 5.0 else w
        widths.append(w)
        left -= w
    return widths


def _props(rng, start, end, normal, ppm, bank: list[Canvas]) -> list[tuple[float, float, int]]:
    """Trees (in some stretches) and lamps in front of one building."""
    placed = []
    length = float(np.linalg.norm(end - start))
    direction = (end - start) / length
    if rng.random() < 0.3:
        for u in np.arange(rng.uniform(1, 4), length, rng.uniform(6, 9)):
            bank.append(sprites.make_tree(rng, ppm))
            p = start + direction * u + normal * 1.6
            placed.append((p[0], p[1], len(bank) - 1))
    if rng.random() < 0.3:
        bank.append(sprites.make_lamp(rng, ppm))
        p = start + direction * length / 2 + normal * 0.6
        placed.append((p[0], p[1], len(bank) - 1))
    return placed


def build_city(config: CityConfig) -> City:
    """Lay out and texture the whole city of ``config`` (deterministic in ``config.seed``)."""
    rng = np.random.default_rng([config.seed, 1])
    ppm, hw = config.texels_per_metre, config.street_width / 2
    xs, ys = street_grid(config, rng)
    walls, normals, canvases, props, bank = [], [], [], [], []
    for start, end, normal in _block_faces(xs, ys, hw):
        direction = (end - start) / np.linalg.norm(end - start)
        u = 0.0
        for width in _split_face(rng, float(np.linalg.norm(end - start))):
            a, b = start + direction * u, start + direction * (u + width)
            park = width > 8 and rng.random() < 0.07
            paint = paint_park if park else paint_building
            canvases.append(paint(rng, width, rng.uniform(9.0, ATLAS_HEIGHT), ppm))
            walls.append((*a, *b))
            normals.append(normal)
            props += _props(rng, a, b, normal, ppm, bank)
            u += width
    atlas, u0, px = _assemble(canvases, int(ATLAS_HEIGHT * ppm), ppm)
    vehicles = tuple(sprites.make_vehicle(rng, ppm) for _ in range(12))
    pedestrians = tuple(sprites.make_pedestrian(rng, ppm) for _ in range(12))
    props_arr = np.array(props, np.float64).reshape(-1, 3)
    return City(xs, ys, hw, np.array(walls), np.array(normals), u0, px, atlas, props_arr[:, :2],
                props_arr[:, 2].astype(np.int64), tuple(bank), vehicles, pedestrians)


def _assemble(canvases: list[Canvas], height: int, ppm: int) -> tuple[Atlas, np.ndarray, np.ndarray]:
    """Place textures side by side in one atlas; return it with each texture's first column and width."""
    px = np.array([c.material.shape[1] for c in canvases], np.int64)
    u0 = np.concatenate([[0], np.cumsum(px)[:-1]])
    width = int(-(-px.sum() // MIP) * MIP)
    albedo = np.zeros((height, width, 3), np.uint8)
    material = np.zeros((height, width), np.uint8)
    aux = np.zeros((height, width), np.uint8)
    for canvas, start, w in zip(canvases, u0, px, strict=True):
        h = min(height, canvas.material.shape[0])
        albedo[:h, start:start + w] = np.clip(canvas.albedo[:h], 0, 255).astype(np.uint8)
        material[:h, start:start + w] = canvas.material[:h]
        aux[:h, start:start + w] = canvas.aux[:h]
    h4 = height // MIP
    coarse = albedo[: h4 * MIP].reshape(h4, MIP, width // MIP, MIP, 3).mean(axis=(1, 3)).astype(np.uint8)
    return Atlas(albedo, material, aux, coarse, ppm), u0, px
