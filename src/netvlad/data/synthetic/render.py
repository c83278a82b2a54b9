"""Perspective rendering of the city: per-column ray casting against façades, floor casting, billboards.

The renderer fills per-pixel buffers (albedo, material, aux, depth, sun facing); :mod:`shade` turns them
into an image under a :class:`Condition`. Camera: pinhole, ``config.focal`` pixels, no roll.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netvlad.data.synthetic.city import ATLAS_HEIGHT, MIP, City
from netvlad.data.synthetic.city_config import CityConfig
from netvlad.data.synthetic.facade import Canvas
from netvlad.data.synthetic.materials import Material

MAX_DISTANCE = 150.0  # metres; walls farther away are not tested
SIDEWALK = 2.5  # metres between the kerb and the façade


@dataclass(frozen=True)
class Pose:
    """Camera position (local metres), heading (degrees counter-clockwise from east), height (m), pitch (px)."""

    x: float
    y: float
    heading: float
    height: float
    pitch: float = 0.0


@dataclass
class Buffers:
    """What each pixel sees: albedo (H, W, 3) in [0, 1], material and aux (H, W) uint8, depth (H, W) metres."""

    albedo: np.ndarray
    material: np.ndarray
    aux: np.ndarray
    depth: np.ndarray
    facing: np.ndarray  # (H, W) cosine between surface normal and the horizontal sun direction (per view)
    horizon: float  # row of the horizon, pixels


class Camera:
    """Rays and projections of one pose."""

    def __init__(self, pose: Pose, config: CityConfig):
        self.pose, self.width, self.height = pose, *config.image_size
        self.f, self.cx = config.focal, config.image_size[0] / 2
        self.horizon = config.image_size[1] / 2 + pose.pitch
        h = np.radians(pose.heading)
        self.position = np.array([pose.x, pose.y])
        self.forward, self.right = np.array([np.cos(h), np.sin(h)]), np.array([np.sin(h), -np.cos(h)])
        slope = (np.arange(self.width) + 0.5 - self.cx) / self.f
        self.rays = self.forward[None, :] + slope[:, None] * self.right[None, :]  # (W, 2), unit forward part

    def project(self, point: np.ndarray) -> tuple[float, float]:
        """Depth (m) and image column of a ground point."""
        v = point - self.position
        z = float(v @ self.forward)
        return z, self.cx + self.f * float(v @ self.right) / max(z, 1e-6)


def cast_walls(city: City, cam: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: depth (m, inf where no wall), wall index (-1) and distance along the wall (m)."""
    p0, p1 = city.walls[:, :2], city.walls[:, 2:]
    mid = (p0 + p1) / 2
    near = np.flatnonzero(np.linalg.norm(mid - cam.position, axis=1) < MAX_DISTANCE)
    e, w = (p1 - p0)[near], p0[near] - cam.position
    d = cam.rays
    denom = d[:, None, 0] * e[None, :, 1] - d[:, None, 1] * e[None, :, 0]  # (W, S)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[None, :, 0] * e[None, :, 1] - w[None, :, 1] * e[None, :, 0]) / denom
        u = (w[None, :, 0] * d[:, None, 1] - w[None, :, 1] * d[:, None, 0]) / denom
    valid = (t > 0.05) & (u >= 0) & (u <= 1) & np.isfinite(t)
    t = np.where(valid, t, np.inf)
    best = t.argmin(axis=1)
    cols = np.arange(len(d))
    depth = t[cols, best]
    hit = np.isfinite(depth)
    index = np.where(hit, near[best], -1)
    along = np.where(hit, u[cols, best] * np.linalg.norm(e[best], axis=1), 0.0)
    return depth, index, along


def draw_walls(city: City, cam: Camera, buf: Buffers, sun: np.ndarray) -> None:
    """Fill wall pixels from the façade atlas (coarse texture where a pixel spans several texels)."""
    depth, index, along = cast_walls(city, cam)
    atlas, ppm = city.atlas, city.atlas.ppm
    rows = np.arange(cam.height, dtype=np.float64)[:, None] + 0.5
    hgt = cam.pose.height + (buf.horizon - rows) * depth[None, :] / cam.f  # (H, W) metres above street
    r, c = np.nonzero((index >= 0)[None, :] & (hgt >= 0) & (hgt < ATLAS_HEIGHT))
    wall = index[c]
    trow = np.minimum((hgt[r, c] * ppm).astype(np.int64), atlas.material.shape[0] - 1)
    tcol = city.wall_u0[wall] + np.clip((along[c] * ppm).astype(np.int64), 0, city.wall_px[wall] - 1)
    flat = trow * atlas.material.shape[1] + tcol
    material = atlas.material.ravel()[flat]
    solid = material != Material.EMPTY
    r, c, trow, tcol, flat, material = r[solid], c[solid], trow[solid], tcol[solid], flat[solid], material[solid]
    coarse = depth[c] / cam.f * ppm > 2.0
    rgb = atlas.albedo.reshape(-1, 3)[flat]
    cflat = np.minimum(trow // MIP, atlas.coarse.shape[0] - 1) * atlas.coarse.shape[1] + tcol // MIP
    rgb[coarse] = atlas.coarse.reshape(-1, 3)[cflat[coarse]]
    buf.albedo[r, c] = rgb * np.float32(1 / 255)
    buf.material[r, c] = material
    buf.aux[r, c] = atlas.aux.ravel()[flat]
    buf.depth[r, c] = depth[c]
    buf.facing[r, c] = (city.normals[index[c]] @ sun).astype(np.float32)


def draw_ground(city: City, cam: Camera, buf: Buffers, rng: np.random.Generator) -> None:
    """Road, sidewalk and dashed centre lines below the horizon, wherever no wall is nearer."""
    r0 = max(0, int(np.floor(buf.horizon + 0.5)) + 1)
    rows = np.arange(r0, cam.height) + 0.5
    z = (cam.pose.height * cam.f / (rows - buf.horizon)).astype(np.float32)  # (R,) metres
    rr, cc = np.nonzero(z[:, None] < buf.depth[r0:])
    zp = z[rr].astype(np.float64)
    g = cam.position[None, :] + zp[:, None] * cam.rays[cc]  # (N, 2) ground points, metres
    dx = np.abs(g[:, 0:1] - city.xs).min(axis=1)
    dy = np.abs(g[:, 1:2] - city.ys).min(axis=1)
    road = np.minimum(dx, dy) < city.half_width - SIDEWALK
    dash = ((dx < 0.12) & (dy > city.half_width) & (g[:, 1] % 6 < 3)) | (
        (dy < 0.12) & (dx > city.half_width) & (g[:, 0] % 6 < 3))
    material = np.where(dash, Material.MARKING, np.where(road, Material.ROAD, Material.SIDEWALK)).astype(np.uint8)
    colours = np.zeros((len(Material), 3), np.float32)
    colours[Material.ROAD], colours[Material.SIDEWALK], colours[Material.MARKING] = 0.28, 0.58, 0.9
    rows_px = rr + r0
    buf.albedo[rows_px, cc] = colours[material] * rng.uniform(0.9, 1.1, (len(rr), 1)).astype(np.float32)
    buf.material[rows_px, cc] = material
    buf.depth[rows_px, cc] = z[rr]
    buf.facing[rows_px, cc] = 0.6


def draw_sprite(cam: Camera, buf: Buffers, sprite: Canvas, point: np.ndarray) -> None:
    """Draw an upright billboard standing at ``point`` (metres), depth-tested against the buffers."""
    z, xc = cam.project(point)
    if z < 0.8:
        return
    th, tw = sprite.material.shape
    half = cam.f * tw / sprite.ppm / 2 / z
    top = buf.horizon - cam.f * (th / sprite.ppm - cam.pose.height) / z
    bottom = buf.horizon + cam.f * cam.pose.height / z
    c0, c1 = max(0, int(np.floor(xc - half))), min(cam.width, int(np.ceil(xc + half)))
    r0, r1 = max(0, int(np.floor(top))), min(cam.height, int(np.ceil(bottom)))
    if c0 >= c1 or r0 >= r1:
        return
    tcol = ((np.arange(c0, c1) + 0.5 - (xc - half)) / (2 * half) * tw).astype(np.int64)
    trow = th - 1 - ((np.arange(r0, r1) + 0.5 - top) / (bottom - top) * th).astype(np.int64)
    tcol, trow = np.clip(tcol, 0, tw - 1), np.clip(trow, 0, th - 1)
    material = sprite.material[trow[:, None], tcol[None, :]]
    rr, cc = np.nonzero((material != Material.EMPTY) & (z < buf.depth[r0:r1, c0:c1]))
    tr, tc, rr, cc = trow[rr], tcol[cc], rr + r0, cc + c0
    buf.albedo[rr, cc] = sprite.albedo[tr, tc] * np.float32(1 / 255)
    buf.material[rr, cc] = sprite.material[tr, tc]
    buf.aux[rr, cc] = sprite.aux[tr, tc]
    buf.depth[rr, cc] = z
    buf.facing[rr, cc] = 0.5
