"""The registry of dataset formats: each reader is a ``detect`` and a ``read`` function, tried in priority order.

A reader module defines its format with ``@register_reader``; its line in :data:`READERS` below declares it in
detection order, so ``netvlad --help`` lists the formats without importing the readers (this module imports neither
numpy nor torch; a reader registered without a declaration works from Python, and the command line lists it once its
module is imported).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from netvlad.errors import BadInputError
from netvlad.registry import Registry

if TYPE_CHECKING:
    from netvlad.data.dataset import GeoDataset

logger = logging.getLogger(__name__)

READERS: Registry = Registry("dataset format", known="choose one of", ordered=True)

for _name, _help in (
    ("mat", "Pittsburgh / Tokyo dbStruct .mat (classic or v7.3) with an image root"),
    ("csv", "manifest path,split,lat,lon or path,split,easting,northing[,zone]"),
    ("dvgb", "images/<split>/{database,queries}/@east@north@zone@letter@lat@lon@...@.jpg"),
    ("msls", "Mapillary Street-Level Sequences root (train_val/<city>/{query,database})"),
    ("exif", "folder of photos with EXIF GPS ({database,queries}/ or one folder)"),
    ("sequence", "two folders of frame-synchronised images with matching names (Nordland)"),
    ("bag", "ROS 1 .bag, ROS 2 bag folder or .mcap (--image-topic, --gps-topic/--odom-topic)"),
):
    READERS.declare(_name, f"netvlad.data.readers.{_name}", _help)


def format_names() -> list[str]:
    """The declared and registered format names, in detection order (what ``--format`` accepts)."""
    return READERS.names()


@dataclass(frozen=True)
class ReadOptions:
    """What the user told us about a dataset; readers ignore what does not apply to them.

    ``database`` / ``queries``: sub-folder names (relative to the dataset root, or to ``image_root`` for .mat);
    ``frame_tolerance``: ±frames counted correct for sequences (default 0); ``spacing``: metres between consecutive
    sequence frames (default ``25 / (frame_tolerance + 1)``); ``skip_bad``: log and count bad entries instead of
    failing. ``image_topic``, ``gps_topic``, ``odom_topic`` and the keyframe rule (``every`` images, ``min_interval``
    seconds, ``min_distance`` metres): ROS bags only.

    Examples:
        >>> options = ReadOptions(database="summer", queries="winter", frame_tolerance=2)  # Nordland-style sequences
        >>> options.database, options.queries, options.frame_tolerance, options.skip_bad
        ('summer', 'winter', 2, False)
    """

    split: str | None = None
    database: str | None = None
    queries: str | None = None
    image_root: Path | None = None
    frame_tolerance: int | None = None
    spacing: float | None = None
    skip_bad: bool = False
    image_topic: str | None = None
    gps_topic: str | None = None
    odom_topic: str | None = None
    every: int | None = None
    min_interval: float | None = None
    min_distance: float | None = None

    @property
    def bag_options(self) -> dict[str, object]:
        """The bag-only options given (name → value)."""
        names = ("image_topic", "gps_topic", "odom_topic", "every", "min_interval", "min_distance")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


Detect = Callable[[Path, ReadOptions], bool]
Read = Callable[[Path, ReadOptions], "GeoDataset"]


@dataclass(frozen=True)
class Reader:
    """One dataset format: ``detect(path, options)`` says whether it applies, ``read(path, options)`` loads it."""

    name: str
    description: str
    detect: Detect
    read: Read
    priority: int  # lower is tried first during auto-detection


def register_reader(name: str, description: str, detect: Detect, priority: int = 50) -> Callable[[Read], Read]:
    """Decorator registering ``read`` as the reader of format ``name`` (``description``: its one-line help)."""

    def decorate(read: Read) -> Read:
        READERS.add(name, Reader(name, description, detect, read, priority), description)
        return read

    return decorate


def list_formats() -> list[str]:
    """Registered format names, in detection order.

    Examples:
        >>> list_formats()
        ['mat', 'csv', 'dvgb', 'msls', 'exif', 'sequence', 'bag']
    """
    return [r.name for r in sorted(READERS.values(), key=lambda r: r.priority)]


def formats_help() -> str:
    """One line per format: ``name: description``."""
    return "; ".join(f"{name}: {READERS[name].description}" for name in list_formats())


def find_reader(path: Path, options: ReadOptions, format: str | None = None) -> Reader:
    """The reader named ``format``, or the first whose ``detect`` accepts ``path``."""
    if format is not None:
        if format not in READERS:
            raise BadInputError(f"unknown dataset format {format!r}; choose one of {', '.join(list_formats())}")
        return READERS[format]
    for name in list_formats():
        reader = READERS[name]
        try:
            if reader.detect(path, options):
                logger.debug("%s: detected format %s", path, name)
                return reader
        except OSError as error:  # an unreadable candidate is not this format
            logger.debug("%s: %s detection failed: %s", path, name, error)
    missing_folder(path, options)
    raise BadInputError(f"{path}: unsupported dataset format ({formats_help()}); pass format=NAME to force one",
                        path=path, hint="--format NAME")


def missing_folder(path: Path, options: ReadOptions) -> None:
    """Raise, naming it and the folders that are there, where a named database/queries sub-folder of ``path`` is
    missing (a typo in ``database=``), rather than listing every format that did not match."""
    if not path.is_dir():
        return
    for side in ("database", "queries"):
        name = getattr(options, side)
        if name and not (path / name).exists():
            there = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            raise BadInputError(f"{path}: no folder {name!r} ({side}=); the folders there: "
                                f"{', '.join(there) or 'none'}", path=path / name,
                                hint=f"--{side} NAME")
