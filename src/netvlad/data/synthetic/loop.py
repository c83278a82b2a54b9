"""The generated city's ``loop`` route: one drive along its interior streets that comes back to some of them later
under other conditions, written as a stream of frames with ground-truth positions (what ``netvlad stream`` reads).

The drive faces along each street (forward camera) every ``spacing`` metres: first every interior street by day,
then the first ``revisit`` share of them again under each of ``conditions`` in turn. ``frames/frames.csv`` holds
the frame name, its time (``index / fps`` seconds), its true position (UTM easting/northing metres), its condition
and the street position it shows; the revisits are the loop closures.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from netvlad.data.synthetic.cameras import street_positions
from netvlad.data.synthetic.city import build_city
from netvlad.data.synthetic.city_config import CityConfig
from netvlad.data.synthetic.conditions import CONDITIONS
from netvlad.data.synthetic.render import Pose
from netvlad.data.synthetic.view import render_view
from netvlad.errors import BadInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    """``revisit``: share of the street positions driven again, under each of ``conditions``; ``fps`` frames per
    second of the stream."""

    revisit: float = 0.5
    conditions: tuple[str, ...] = ("dusk", "winter")
    fps: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.revisit <= 1:
            raise BadInputError(f"revisit must be a share in (0, 1], got {self.revisit}")
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown:
            raise BadInputError(f"unknown condition(s) {unknown}; choose from {sorted(CONDITIONS)}")


def loop_drive(city_config: CityConfig, config: LoopConfig = LoopConfig()) -> list[tuple[int, str]]:
    """(street position index, condition) per frame of the drive, in order."""
    city = build_city(city_config)
    points, _ = street_positions(city, city_config)
    first = [(i, city_config.db_condition) for i in range(len(points))]
    again = int(round(config.revisit * len(points)))
    return first + [(i, condition) for condition in config.conditions for i in range(again)]


def write_loop_route(city_config: CityConfig, out: Path | str, config: LoopConfig = LoopConfig()) -> Path:
    """Render the loop drive into ``out/frames`` (JPEG frames and ``frames.csv``); -> the frames folder."""
    out = Path(out)
    frames = out / "frames"
    if frames.exists() and any(frames.iterdir()):
        raise BadInputError(f"{frames}: exists and is not empty; choose a new --out folder", path=frames)
    frames.mkdir(parents=True, exist_ok=True)
    city = build_city(city_config)
    points, headings = street_positions(city, city_config)
    drive = loop_drive(city_config, config)
    east0, north0 = city_config.origin
    rows = []
    for index, (where, condition) in enumerate(drive):
        pose = Pose(points[where, 0], points[where, 1], headings[where], city_config.camera_height, 0.0)
        image = render_view(city, city_config, pose, CONDITIONS[condition], [city_config.seed, 20, index])
        name = f"{index:06d}.jpg"
        Image.fromarray(image).save(frames / name, "JPEG", quality=city_config.jpeg_quality)
        rows.append({"name": name, "time": f"{index / config.fps:.6f}",
                     "easting": f"{points[where, 0] + east0:.3f}", "northing": f"{points[where, 1] + north0:.3f}",
                     "condition": condition, "street_position": where})
    with open(frames / "frames.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    revisits = len(drive) - len(points)
    logger.info("loop route of %d frames (%d street positions, %d revisits) written to %s", len(drive),
                len(points), revisits, frames)
    return frames


def revisit_mask(frames: Path) -> np.ndarray:
    """Per frame of a written loop route: True where it shows a street position driven before."""
    with open(Path(frames) / "frames.csv", newline="", encoding="utf-8") as handle:
        seen, out = set(), []
        for row in csv.DictReader(handle):
            out.append(row["street_position"] in seen)
            seen.add(row["street_position"])
    return np.array(out, dtype=bool)
