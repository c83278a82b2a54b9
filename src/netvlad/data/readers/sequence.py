"""Frame-synchronised sequences (Nordland, Gardens Point): two folders whose file names match frame by frame.

Frames are indices into the naturally sorted list of common file stems; positions are ``(frame × spacing, 0)``
metres so that radius-based training code runs unchanged. Defaults: ``frame_tolerance`` 0 (same name = same place,
Nordland's protocol; pass 2 for Gardens Point's VPR-Bench protocol) and ``spacing = 25 / (frame_tolerance + 1)``
metres, so the 25 m non-negative radius covers every frame counted correct at evaluation (±tolerance, plus one) and
the 10 m training radius keeps the same frame as the positive.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from netvlad.constants import NEGATIVE_RADIUS_M
from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.info import DatasetInfo
from netvlad.data.readers.common import DatasetError, Skips, has_images, list_images
from netvlad.data.readers.registry import ReadOptions, register_reader
from netvlad.data.sequences import SequenceOrder, frame_number, frame_steps

logger = logging.getLogger(__name__)

def natural_key(name: str) -> list:
    """Sort key treating digit runs as numbers: ``img2`` < ``img10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def default_spacing(frame_tolerance: int) -> float:
    """Metres between frames such that ±(tolerance + 1) frames lie within the 25 m non-negative radius."""
    return NEGATIVE_RADIUS_M / (frame_tolerance + 1)


def image_folders(root: Path) -> list[str]:
    """Names of the sub-folders of ``root`` that directly hold images."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and has_images(p)) if root.is_dir() else []


def detect(path: Path, options: ReadOptions) -> bool:
    """A folder with (the named, or at least two) sub-folders of images."""
    if options.database and options.queries:
        return has_images(path / options.database) and has_images(path / options.queries)
    return len(image_folders(path)) >= 2


def stems(folder: Path, skips: Skips) -> dict[str, str]:
    """File stem -> file name for the images directly in ``folder``; repeated stems are bad entries."""
    found: dict[str, str] = {}
    for name in list_images(folder, recursive=False):
        stem = Path(name).stem
        if stem in found:
            skips.bad(folder / name, f"same frame name as {found[stem]}", "keep one file per frame")
            continue
        found[stem] = name
    return found


def match(db: dict[str, str], q: dict[str, str], db_dir: Path, q_dir: Path, skips: Skips) -> list[str]:
    """Naturally sorted stems present in both folders; unmatched ones are bad entries."""
    for mine, other_dir, theirs, mine_dir in ((q, db_dir, db, q_dir), (db, q_dir, q, db_dir)):
        unmatched = sorted(set(mine) - set(theirs), key=natural_key)
        if unmatched and not skips.skip_bad:
            raise DatasetError(f"{mine_dir / mine[unmatched[0]]}: no frame of the same name in {other_dir} "
                               f"({len(unmatched)} unmatched); sequences need matching file names (or pass "
                               "skip_bad=True)",
                               path=mine_dir / mine[unmatched[0]], hint="--skip-bad", skippable=True)
        for stem in unmatched:
            skips.bad(mine_dir / mine[stem], f"no frame of the same name in {other_dir}")
    return sorted(set(db) & set(q), key=natural_key)


def order(stems: list[str], frames: np.ndarray, side: str) -> SequenceOrder:
    """Each folder is one sequence; its frame numbers are the names' numbers in units of their step (a missing
    frame is a gap), or the frame indices where a name has no number."""
    numbers = [frame_number(s) for s in stems]
    known = all(n is not None for n in numbers) and len(set(numbers)) == len(numbers)
    return SequenceOrder.single(frame_steps(numbers) if known else frames, side)


@register_reader("sequence", "two folders of frame-synchronised images with matching names (Nordland)", detect, 90)
def read(path: Path, options: ReadOptions) -> GeoDataset:
    """Load a sequence pair; see the module docstring for frames, positions and defaults."""
    if not (options.database and options.queries):
        found = image_folders(path)
        raise DatasetError(f"{path}: a sequence folder holding {', '.join(found) or 'no image folders'}; name the "
                           "two as database= and queries= (e.g. summer and winter)", path=path,
                           hint="--database summer --queries winter")
    tolerance = 0 if options.frame_tolerance is None else int(options.frame_tolerance)
    if tolerance < 0:
        raise DatasetError(f"{path}: frame tolerance must be ≥ 0, got {tolerance}")
    spacing = default_spacing(tolerance) if options.spacing is None else float(options.spacing)
    if not spacing > 0:
        raise DatasetError(f"{path}: spacing must be > 0 metres, got {spacing}")
    skips = Skips(options.skip_bad)
    db_dir, q_dir = path / options.database, path / options.queries
    db, q = stems(db_dir, skips), stems(q_dir, skips)
    common = match(db, q, db_dir, q_dir, skips)
    if not common:
        raise DatasetError(f"{q_dir}: no file name in common with {db_dir}; sequences need matching file names")
    frames = np.arange(len(common), dtype=np.int64)
    utm = np.stack([frames * spacing, np.zeros(len(frames))], axis=1)
    database = ImageList(db_dir, tuple(db[s] for s in common), utm, frames=frames,
                         sequence=order(common, frames, options.database))
    queries = ImageList(q_dir, tuple(q[s] for s in common), utm.copy(), frames=frames.copy(),
                        sequence=order(common, frames, options.queries))
    info = DatasetInfo(format="sequence", spacing=spacing, spacing_assumed=options.spacing is None,
                       skipped=skips.entries)
    name = f"{path.name}-{options.database}-{options.queries}"
    logger.info("%s: %d frames, ±%d frames, %.3g m per frame%s", name, len(common), tolerance, spacing,
                " (assumed: the frames carry no positions)" if info.spacing_assumed else "")
    return GeoDataset(name, database, queries, frame_tolerance=tolerance, info=info)
