"""Camera poses: database views every ``spacing`` metres along the streets, queries near them, and splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netvlad.data.synthetic.city import City
from netvlad.data.synthetic.city_config import CityConfig

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class Views:
    """Poses of one pass (database or queries): local metres, headings in degrees counter-clockwise from east."""

    xy: np.ndarray  # (N, 2) true camera position
    heading: np.ndarray  # (N,)
    height: np.ndarray  # (N,) camera height above the street, metres
    pitch: np.ndarray  # (N,) horizon shift, pixels
    recorded: np.ndarray  # (N, 2) position written to the file name (true position + GPS noise)
    split: np.ndarray  # (N,) index into SPLITS
    condition: tuple[str, ...]
    anchor: np.ndarray  # (N,) street position index the view belongs to (queries: the one it was drawn near)

    def __len__(self) -> int:
        return len(self.heading)



def split_boundaries(city: City, config: CityConfig) -> np.ndarray:
    """x of the train|val and val|test boundaries, snapped to block middles, metres."""
    xmin, _, xmax, _ = city.extent
    mids = (city.xs[:-1] + city.xs[1:]) / 2
    wanted = xmin + np.cumsum(config.splits[:2]) * (xmax - xmin)
    bounds = mids[np.abs(mids[None, :] - wanted[:, None]).argmin(axis=1)]
    if bounds[0] >= bounds[1]:
        raise ValueError(f"city of {config.blocks} blocks is too small for splits {config.splits}; add blocks")
    return bounds


def street_positions(city: City, config: CityConfig) -> tuple[np.ndarray, np.ndarray]:
    """Positions along interior streets every ``spacing`` metres: (P, 2) metres and (P,) street headings."""
    hw, xmin, ymin, xmax, ymax = city.half_width, *city.extent
    points, headings = [], []
    for x in city.xs[1:-1]:  # north–south streets, driven northwards
        for y in np.arange(ymin + hw, ymax - hw, config.spacing):
            points.append((x, y))
            headings.append(90.0)
    for y in city.ys[1:-1]:  # east–west streets, driven eastwards; crossings belong to the streets above
        for x in np.arange(xmin + hw, xmax - hw, config.spacing):
            if np.abs(city.xs - x).min() >= hw:
                points.append((x, y))
                headings.append(0.0)
    return np.array(points, np.float64), np.array(headings, np.float64)


def street_passes(city: City, config: CityConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per street position (as :func:`street_positions` lists them): the street it lies on (P,), its index along
    that street (P,) and the street's heading (P,) degrees: each drive along a street is one sequence."""
    points, headings = street_positions(city, config)
    along = np.where(headings == 90.0, points[:, 1], points[:, 0])
    across = np.where(headings == 90.0, points[:, 0], points[:, 1])
    keys = np.stack([headings, across], axis=1)
    _, street = np.unique(keys, axis=0, return_inverse=True)
    street = street.reshape(-1)
    index = np.zeros(len(points), np.int64)
    for s in np.unique(street):
        members = np.flatnonzero(street == s)
        index[members[np.argsort(along[members], kind="stable")]] = np.arange(len(members))
    return street.astype(np.int64), index, headings


def _split_of(x: np.ndarray, bounds: np.ndarray, gap: float) -> np.ndarray:
    """Split index per x, or -1 within ``gap / 2`` of a boundary."""
    split = np.searchsorted(bounds, x)
    near = np.abs(x[:, None] - bounds[None, :]).min(axis=1) < gap / 2
    return np.where(near, -1, split)


def _noise(rng: np.random.Generator, std: float, shape) -> np.ndarray:
    """Gaussian noise clipped at two standard deviations."""
    return np.clip(rng.normal(0.0, std, shape), -2 * std, 2 * std) if std > 0 else np.zeros(shape)


def database_views(city: City, config: CityConfig) -> Views:
    """Two oblique views (left and right of the street direction) per street position."""
    rng = np.random.default_rng([config.seed, 2])
    points, street = street_positions(city, config)
    split = _split_of(points[:, 0], split_boundaries(city, config), config.split_gap)
    keep = np.flatnonzero(split >= 0)
    if len(np.unique(split[keep])) < len(SPLITS):
        raise ValueError(f"city of {config.blocks} blocks is too small for splits {config.splits}; add blocks")
    idx = np.repeat(keep, 2)
    n = len(idx)
    side = np.tile([1.0, -1.0], len(keep))
    lateral = np.radians(street[idx] + 90.0)
    xy = points[idx] + rng.uniform(-0.5, 0.5, (n, 1)) * np.stack([np.cos(lateral), np.sin(lateral)], 1)
    heading = street[idx] + side * config.view_angle + _noise(rng, 1.5, n)
    recorded = xy + _noise(rng, config.gps_noise / 2, (n, 2))
    return Views(xy, heading, np.full(n, config.camera_height), np.zeros(n), recorded, split[idx],
                 (config.db_condition,) * n, idx)


def query_views(city: City, config: CityConfig) -> Views:
    """Queries a few metres from random street positions, with heading, height, pitch and GPS noise."""
    rng = np.random.default_rng([config.seed, 3])
    points, street = street_positions(city, config)
    split = _split_of(points[:, 0], split_boundaries(city, config), config.split_gap)
    anchors = []
    for s in range(len(SPLITS)):
        members = np.flatnonzero(split == s)
        count = int(round(config.query_fraction * len(members)))
        anchors.append(np.sort(rng.choice(members, count, replace=False)))
    idx = np.concatenate(anchors)
    n = len(idx)
    theta = np.radians(street[idx])
    along, across = np.stack([np.cos(theta), np.sin(theta)], 1), np.stack([-np.sin(theta), np.cos(theta)], 1)
    offset = rng.uniform(-config.query_offset, config.query_offset, (n, 1))
    xy = points[idx] + along * offset + across * rng.uniform(-config.query_lateral, config.query_lateral, (n, 1))
    side = rng.choice([-1.0, 1.0], n)
    heading = street[idx] + side * config.view_angle + _noise(rng, config.heading_noise, n)
    conditions = config.query_conditions
    order = rng.permutation(n) % len(conditions)
    recorded = xy + _noise(rng, config.gps_noise, (n, 2))
    pitch = rng.uniform(-3, 3, n) * config.image_size[1] / 120
    return Views(xy, heading, config.camera_height + rng.uniform(-0.2, 0.2, n), pitch, recorded, split[idx],
                 tuple(conditions[k] for k in order), idx)
