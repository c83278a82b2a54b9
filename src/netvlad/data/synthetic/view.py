"""One view of the city: fixed props, random vehicles and pedestrians, rendered and shaded."""

from __future__ import annotations

import numpy as np

from netvlad.data.synthetic.city import City
from netvlad.data.synthetic.city_config import CityConfig
from netvlad.data.synthetic.conditions import Condition
from netvlad.data.synthetic.materials import Material
from netvlad.data.synthetic.render import SIDEWALK, Buffers, Camera, Pose, draw_ground, draw_sprite, draw_walls
from netvlad.data.synthetic.shade import shade, sun_direction


def _street_centre(city: City, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The point of the nearest street centreline beside ``position`` and that street's unit direction."""
    x_street = city.xs[np.abs(city.xs - position[0]).argmin()]
    y_street = city.ys[np.abs(city.ys - position[1]).argmin()]
    if abs(x_street - position[0]) < abs(y_street - position[1]):
        return np.array([x_street, position[1]]), np.array([0.0, 1.0])
    return np.array([position[0], y_street]), np.array([1.0, 0.0])


def _occluders(city: City, cam: Camera, buf: Buffers, count: int, rng: np.random.Generator) -> None:
    """Vehicles in the lanes and pedestrians on the sidewalks, ahead of the camera."""
    centre, axis = _street_centre(city, cam.position)
    sign = 1.0 if axis @ cam.forward >= 0 else -1.0
    across = np.array([-axis[1], axis[0]])
    lane = (city.half_width - SIDEWALK) / 2
    for _ in range(count):
        along = sign * rng.uniform(3.0, 30.0) * axis
        if rng.random() < 0.55:
            sprite = city.vehicles[rng.integers(len(city.vehicles))]
            lateral = rng.choice([-1.6, -0.8, 0.8, 1.6]) * lane
        else:
            sprite = city.pedestrians[rng.integers(len(city.pedestrians))]
            lateral = rng.choice([-1.0, 1.0]) * (city.half_width - rng.uniform(0.4, SIDEWALK))
        draw_sprite(cam, buf, sprite, centre + along + across * lateral)


def render_buffers(city: City, config: CityConfig, pose: Pose, condition: Condition, rngs) -> Buffers:
    """Geometry of one view: walls, ground, trees and lamps, occluders (``rngs``: ground and occluder generators)."""
    cam = Camera(pose, config)
    w, h = config.image_size
    buf = Buffers(np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8),
                  np.full((h, w), np.inf, np.float32), np.zeros((h, w), np.float32), cam.horizon)
    draw_walls(city, cam, buf, sun_direction(condition))
    draw_ground(city, cam, buf, rngs[0])
    v = city.props - cam.position
    z = v @ cam.forward
    for k in np.flatnonzero((z > 0.8) & (z < 60) & (np.abs(v @ cam.right) < z * w / 2 / cam.f + 4)):
        draw_sprite(cam, buf, city.sprites[city.prop_sprite[k]], city.props[k])
    _occluders(city, cam, buf, int(rngs[1].poisson(condition.occluders)), rngs[1])
    buf.material[np.isinf(buf.depth) & (buf.material != Material.EMPTY)] = Material.EMPTY
    return buf


def render_view(city: City, config: CityConfig, pose: Pose, condition: Condition, seed) -> np.ndarray:
    """(H, W, 3) uint8 image of ``city`` from ``pose`` under ``condition``; ``seed`` fixes its random details."""
    # separate streams, so that how many pixels a pose sees does not move the occluders or the noise
    ground, occluders, shading = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    return shade(render_buffers(city, config, pose, condition, (ground, occluders)), condition, shading)
