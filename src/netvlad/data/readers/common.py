"""Helpers the readers share: listing image folders, checking files, collecting skipped entries."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netvlad.data import geo
from netvlad.errors import BadInputError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class DatasetError(BadInputError):
    """A dataset cannot be read as given; the message names the file and the fix.

    Examples:
        >>> import tempfile
        >>> from netvlad.data import open_dataset
        >>> folder = tempfile.TemporaryDirectory()
        >>> open_dataset(folder.name)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        netvlad.data.readers.common.DatasetError: /...: folder is empty; point at the dataset's root folder
        >>> folder.cleanup()
    """


@dataclass
class Skips:
    """Bad entries: raised at once, or (``skip_bad``) logged and collected as ``(path, reason)``."""

    skip_bad: bool
    entries: list[tuple[str, str]] = field(default_factory=list)

    def bad(self, path: Path | str, reason: str, fix: str = "") -> None:
        """Record a bad entry, or raise :class:`DatasetError` naming it when not skipping."""
        if not self.skip_bad:
            raise DatasetError(f"{path}: {reason}" + (f"; {fix}" if fix else "") + " (or pass skip_bad=True)",
                               path=path, hint="--skip-bad skips it", skippable=True)
        logger.warning("skipping %s: %s", path, reason)
        self.entries.append((str(path), reason))


def is_image(path: Path) -> bool:
    """True for a file with an image suffix (case-insensitive)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path, recursive: bool = True) -> list[str]:
    """Sorted image paths under ``folder``, relative to it (POSIX separators); error if none."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found; check the dataset path and the database/queries "
                           "sub-folders", path=folder, hint="--database/--queries")
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    names = sorted(p.relative_to(folder).as_posix() for p in pattern if p.is_file() and is_image(p))
    if not names:
        raise DatasetError(f"{folder}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return names


def has_images(folder: Path) -> bool:
    """True when ``folder`` directly holds at least one image file."""
    return folder.is_dir() and any(p.is_file() and is_image(p) for p in folder.iterdir())


def first_image(folder: Path) -> Path | None:
    """The first image (sorted) directly in ``folder``, or None."""
    if not folder.is_dir():
        return None
    images = sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))
    return images[0] if images else None


def pair_dirs(root: Path, options, default: tuple[str, str] = ("database", "queries")) -> tuple[Path, Path]:
    """The database and query folders under ``root``, named by ``options.database/queries`` or ``default``."""
    return root / (options.database or default[0]), root / (options.queries or default[1])


def check_files(root: Path, names: list[str], skips: Skips) -> np.ndarray:
    """Boolean mask of ``names`` that exist under ``root``; missing ones go to ``skips`` (or raise)."""
    keep = np.ones(len(names), dtype=bool)
    for i, name in enumerate(names):
        if not (root / name).is_file():
            skips.bad(root / name, "image file not found", "fix the path or the image root")
            keep[i] = False
    return keep


def duplicates_mask(names: list[str], where: Path, skips: Skips) -> np.ndarray:
    """Boolean mask keeping the first of each repeated name; repeats go to ``skips`` (or raise)."""
    seen: set[str] = set()
    keep = np.ones(len(names), dtype=bool)
    for i, name in enumerate(names):
        if name in seen:
            skips.bad(where / name, "listed twice", "remove the duplicate entry")
            keep[i] = False
        seen.add(name)
    return keep


def single_zone(keys: np.ndarray, names: list[str], skips: Skips) -> np.ndarray:
    """Boolean mask of points in the majority UTM zone; other zones raise naming a file (or go to ``skips``)."""
    keys = np.asarray(keys, dtype=object)
    if len(set(keys.tolist())) <= 1:
        return np.ones(len(keys), dtype=bool)
    summary = geo.describe_zones(keys)
    major = summary.split(" ")[0]
    keep = keys == major
    first = names[int(np.flatnonzero(~keep)[0])]
    if not skips.skip_bad:
        raise DatasetError(f"{first}: images span UTM zones {summary}; keep one area per dataset, or pass "
                           f"skip_bad=True to keep only zone {major}", path=first, hint="--skip-bad",
                           skippable=True)
    for i in np.flatnonzero(~keep):
        skips.bad(names[i], f"UTM zone {keys[i]} differs from the dataset's zone {major}")
    return keep
