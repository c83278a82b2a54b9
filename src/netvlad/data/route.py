"""Two traverses of one route laid out as one stream, so loop closures have ground truth.

The frames of ``first`` and then ``second`` (e.g. Gardens Point day_left then day_right, Nordland summer then
winter) become ``frames/000000.ext, ...`` (symlinks, or copies) with a ``frames.csv``: the frame's name, its time
(``index / fps`` seconds) and a position along the route: place p sits at easting ``p × spacing`` metres, northing
0, where p is the frame's rank among the first traverse's names (the same name is the same place in both, as in
these datasets). The second traverse's frames revisit the first's places; a radius of ``tolerance × spacing``
metres then counts ±tolerance frames as the same place.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from netvlad.data.readers.common import list_images
from netvlad.errors import BadInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteConfig:
    """``every`` keeps one place in N, ``limit`` the first N places kept (None: all), ``fps`` stream frames per
    second, ``spacing`` metres between neighbouring places, ``copy`` files instead of symlinks."""

    every: int = 1
    limit: int | None = None
    fps: float = 1.0
    spacing: float = 1.0
    copy: bool = False


def route_places(first: Path, second: Path, config: RouteConfig) -> list[str]:
    """Names of the places kept: those of ``first`` (name order), every ``every``-th, the first ``limit``; each
    must also exist in ``second``."""
    names = list_images(first, recursive=False)
    other = set(list_images(second, recursive=False))
    missing = [n for n in names if n not in other]
    if missing:
        raise BadInputError(f"{second}: lacks {len(missing)} of {first}'s frame names (e.g. {missing[0]}); the two "
                            "traverses must name the same places alike", path=second)
    kept = names[::config.every]
    return kept[:config.limit] if config.limit else kept


def write_route(first: Path | str, second: Path | str, out: Path | str, config: RouteConfig = RouteConfig()) -> Path:
    """Lay ``first`` then ``second`` out as one stream in ``out`` (``frames/`` and ``frames/frames.csv``);
    -> the frames folder."""
    first, second, out = Path(first), Path(second), Path(out)
    places = route_places(first, second, config)
    frames = out / "frames"
    if frames.exists() and any(frames.iterdir()):
        raise BadInputError(f"{frames}: exists and is not empty; choose a new --out folder", path=frames)
    frames.mkdir(parents=True, exist_ok=True)
    rows = []
    for traverse, folder in enumerate((first, second)):
        for place, name in enumerate(places):
            index = traverse * len(places) + place
            target = frames / f"{index:06d}{Path(name).suffix.lower()}"
            source = (folder / name).resolve()
            if config.copy:
                shutil.copyfile(source, target)
            else:
                os.symlink(source, target)
            rows.append({"name": target.name, "time": f"{index / config.fps:.6f}",
                         "easting": f"{place * config.spacing:.3f}", "northing": "0.000",
                         "traverse": folder.name, "source": name})
    with open(frames / "frames.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    logger.info("route of %d places × 2 traverses (%s then %s) written to %s", len(places), first.name,
                second.name, frames)
    return frames
