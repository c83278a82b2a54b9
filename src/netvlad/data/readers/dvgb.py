"""The Deep Visual Geo-localization Benchmark layout (VPR-datasets-downloader).

``<root>/images/{train,val,test}/{database,queries}/`` (or a folder directly holding ``database/`` and ``queries/``)
with file names ``@UTM_east@UTM_north@UTM_zone_number@UTM_zone_letter@lat@lon@pano_id@tile_num@heading@pitch@roll
@height@timestamp@note@.jpg``; only the first two fields are required. Sequence order comes from a
``sequences.csv`` beside the splits (``split,kind,name,sequence,frame``; the generated city writes one) or, where
every name of a side has a numeric timestamp, from the timestamps (one sequence, in time order).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path

import numpy as np

from netvlad.data.convert import SIDECAR
from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.info import DatasetInfo
from netvlad.data.readers.common import DatasetError, Skips, first_image, list_images, pair_dirs, single_zone
from netvlad.data.readers.registry import ReadOptions, register_reader
from netvlad.data.sequences import SequenceOrder
from netvlad.files import read_json

logger = logging.getLogger(__name__)

# name fields, after a leading "@": utm_east, utm_north, zone_number, zone_letter, lat, lon, pano_id, tile_num, heading,
# pitch, roll, height, timestamp, note
DEFAULT_SPLITS = ("test", "val", "train")
SEQUENCES = "sequences.csv"


def is_dvgb_name(name: str) -> bool:
    """True for a file name in DVGB form (``@east@north@...``)."""
    fields = Path(name).name.split("@")
    return len(fields) >= 4 and fields[0] == "" and all(_is_float(f) for f in fields[1:3])


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def split_folder(root: Path, options: ReadOptions, announce: bool = True) -> Path:
    """The folder holding ``database/`` and ``queries/``: ``root`` itself or ``root/images/<split>``."""
    db_dir, q_dir = pair_dirs(root, options)
    if db_dir.is_dir() or q_dir.is_dir():
        return root
    base = root / "images" if (root / "images").is_dir() else root
    splits = sorted(p.name for p in base.iterdir() if p.is_dir() and pair_dirs(p, options)[0].is_dir()) \
        if base.is_dir() else []
    if options.split:
        if options.split not in splits:
            raise DatasetError(f"{base / options.split}: split not found; this dataset has {', '.join(splits)}")
        return base / options.split
    if not splits:
        raise DatasetError(f"{root}: no database/ and queries/ folders (DVGB layout images/<split>/database)")
    chosen = next((s for s in DEFAULT_SPLITS if s in splits), splits[0])
    if len(splits) > 1 and announce:
        logger.info("%s: using split %s of %s (choose with split=NAME)", root, chosen, ", ".join(splits))
    return base / chosen


def detect(path: Path, options: ReadOptions) -> bool:
    """A folder in DVGB layout whose first database (or query) image has a DVGB name."""
    if not path.is_dir():
        return False
    try:
        # a wrong split is read's error, not detect's
        folder = split_folder(path, dataclasses.replace(options, split=None), announce=False)
    except DatasetError:
        return False
    for sub in pair_dirs(folder, options):
        image = first_image(sub)
        if image is not None:
            return is_dvgb_name(image.name)
    return False


def parse_names(folder: Path, names: list[str], skips: Skips) -> dict:
    """Fields of each DVGB name -> arrays ``utm`` (N, 2), ``zone_keys``, ``captures`` and the ``keep`` mask."""
    utm = np.full((len(names), 2), np.nan)
    keys, captures, stamps = [""] * len(names), [""] * len(names), [""] * len(names)
    letters: list[str] = []
    keep = np.ones(len(names), dtype=bool)
    for i, name in enumerate(names):
        fields = Path(name).name.split("@")
        if not is_dvgb_name(name) or not np.isfinite([float(fields[1]), float(fields[2])]).all():
            skips.bad(folder / name, "file name does not start with @UTM_east@UTM_north@ (DVGB naming)",
                      "rename it or use a CSV manifest")
            keep[i] = False
            continue
        utm[i] = float(fields[1]), float(fields[2])
        if len(fields) > 4 and fields[3].strip().isdigit() and fields[4].strip():
            letter = fields[4].strip().upper()
            keys[i] = f"{int(fields[3])}{'N' if letter >= 'N' else 'S'}"
            letters.append(letter)
        pano = fields[7] if len(fields) > 7 else ""
        stamp = stamps[i] = fields[13] if len(fields) > 13 else ""
        captures[i] = f"pano:{pano}" if pano else f"time:{stamp}" if stamp else ""
    return {"utm": utm, "keys": np.array(keys, dtype=object), "captures": captures, "stamps": stamps, "keep": keep,
            "letter": max(set(letters), key=letters.count) if letters else None}


def capture_ids(captures: list[str], vocabulary: dict[str, int]) -> np.ndarray:
    """Panorama id / timestamp strings -> float ids shared by database and queries (NaN unknown)."""
    return np.array([vocabulary.setdefault(c, len(vocabulary)) if c else np.nan for c in captures], dtype=np.float64)


@register_reader("dvgb", "images/<split>/{database,queries}/@east@north@zone@letter@lat@lon@...@.jpg", detect, 20)
def read(path: Path, options: ReadOptions) -> GeoDataset:
    """Load one split of a DVGB-layout dataset."""
    folder = split_folder(path, options)
    skips = Skips(options.skip_bad)
    sides = {}
    for side, sub in zip(("database", "queries"), pair_dirs(folder, options), strict=True):
        names = list_images(sub)
        sides[side] = (sub, names, parse_names(sub, names, skips))
    keys = np.concatenate([p["keys"] for _, _, p in sides.values()])
    all_names = [str(sub / n) for sub, names, _ in sides.values() for n in names]
    known = keys != ""
    in_zone = np.ones(len(keys), dtype=bool)
    in_zone[known] = single_zone(keys[known], [n for n, k in zip(all_names, known, strict=True) if k], skips)
    vocabulary: dict[str, int] = {}
    lists, offset = {}, 0
    zone_numbers = {int(k[:-1]) for k in keys[known & in_zone]}
    letter = next((p["letter"] for _, _, p in sides.values() if p["letter"]), None)
    zone = (zone_numbers.pop(), letter) if len(zone_numbers) == 1 and letter else None
    for side, (sub, names, parsed) in sides.items():
        keep = parsed["keep"] & in_zone[offset:offset + len(names)]
        offset += len(names)
        times = capture_ids(parsed["captures"], vocabulary)
        kept = tuple(np.asarray(names, dtype=object)[keep])
        stamps = [s for s, k in zip(parsed["stamps"], keep, strict=True) if k]
        lists[side] = ImageList(sub, kept, parsed["utm"][keep], zone, times[keep] if np.isfinite(times).any()
                                else None, sequence=sequence_order(folder, sub.name, kept, stamps))
    name = folder.name if folder == path else f"{path.name}-{folder.name}"
    info = DatasetInfo(format="dvgb", skipped=skips.entries)
    return as_sequence(GeoDataset(name, lists["database"], lists["queries"], info=info), folder, options)


def sequence_order(folder: Path, kind: str, names: tuple[str, ...], stamps: list[str]) -> SequenceOrder | None:
    """Sequence order of one side: the ``sequences.csv`` rows of ``folder``'s split and ``kind`` when they list every
    image, else the numeric timestamps (time rank), else None."""
    sidecar = next((p / SEQUENCES for p in (folder, *folder.parents[:2]) if (p / SEQUENCES).is_file()), None)
    if sidecar is not None and names:
        with open(sidecar, newline="", encoding="utf-8") as handle:
            table = {(r.get("split", ""), r.get("kind", ""), r.get("name", "")): r for r in csv.DictReader(handle)}
        rows = [table.get((folder.name, kind, name)) or table.get(("", kind, name)) for name in names]
        if all(rows):
            try:
                return SequenceOrder.from_keys([r["sequence"] for r in rows], [int(r["frame"]) for r in rows])
            except (KeyError, ValueError) as error:
                raise DatasetError(f"{sidecar}: needs columns split,kind,name,sequence,frame with integer frames "
                                   f"({error})", path=sidecar) from None
    if names and all(_is_float(s) for s in stamps):
        times = np.asarray([float(s) for s in stamps])
        frames = np.empty(len(times), np.int64)
        frames[np.argsort(times, kind="stable")] = np.arange(len(times))
        return SequenceOrder.single(frames, kind)
    return None


def as_sequence(dataset: GeoDataset, folder: Path, options: ReadOptions) -> GeoDataset:
    """Restore frames and tolerance of a sequence written by ``netvlad data convert`` (its JSON sidecar)."""
    sidecar = next((p / SIDECAR for p in (folder, *folder.parents[:3]) if (p / SIDECAR).is_file()), None)
    if sidecar is None:
        return dataset
    info = read_json(sidecar, "sequence description")
    try:
        spacing = float(info["spacing"]) if options.spacing is None else options.spacing
        tolerance = int(info["frame_tolerance"]) if options.frame_tolerance is None else options.frame_tolerance
    except (KeyError, TypeError, ValueError) as error:
        raise DatasetError(f"{sidecar}: sequence description lacks a numeric {error}; rewrite it with "
                           "convert_to_dvgb", path=sidecar) from None
    frames = [np.round(images.utm[:, 0] / spacing).astype(np.int64) for images in (dataset.database, dataset.queries)]
    database = ImageList(dataset.database.root, dataset.database.names, dataset.database.utm, frames=frames[0],
                         sequence=dataset.database.sequence or SequenceOrder.single(frames[0], "database"))
    queries = ImageList(dataset.queries.root, dataset.queries.names, dataset.queries.utm, frames=frames[1],
                        sequence=dataset.queries.sequence or SequenceOrder.single(frames[1], "queries"))
    logger.info("%s: sequence (±%d frames, %g m per frame) from %s", dataset.name, tolerance, spacing, sidecar)
    return GeoDataset(dataset.name, database, queries, tolerance, dataclasses.replace(dataset.info, spacing=spacing))
