"""Mapillary Street-Level Sequences (MSLS), the official layout and validation protocol (image-to-image task).

``<root>/train_val/<city>/{query,database}/`` with ``images/<key>.jpg`` and four CSV files whose first column is a
row index: ``raw.csv`` (key, lon, lat, ca, captured_at, pano), ``postprocessed.csv`` (key, utm/easting, northing,
night, control_panel, view_direction, unique_cluster), ``subtask_index.csv`` (one boolean column per subtask: all,
s2w, w2s, o2n, n2o, d2n, n2d) and ``seq_info.csv`` (key, sequence_key, frame_number).

As the official ``MSLS`` dataset class (``mapillary_sls``, mode ``val``): the images are the rows of
``postprocessed.csv``; an image is kept on both sides when its subtask column is true and it is not a panorama
(``raw.csv`` pano); positions are the UTM easting/northing. ``split`` selects cities: ``val`` (the official
validation cities cph and sf, the default), ``train``, or names such as ``cph,sf``; a ``:SUBTASK`` suffix
(``val:n2d``) selects a subtask. City names prefix the image names (``cph/query/images/<key>.jpg``), so per-city
results come from the names. Queries with no database image within 25 m stay in the dataset (the msls-val protocol
drops them, as the official code does).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.info import DatasetInfo
from netvlad.data.readers.common import DatasetError, Skips, check_files
from netvlad.data.readers.registry import ReadOptions, register_reader
from netvlad.data.sequences import SequenceOrder

logger = logging.getLogger(__name__)

CITIES = {
    "train": ("trondheim", "london", "boston", "melbourne", "amsterdam", "helsinki", "tokyo", "toronto", "saopaulo",
              "moscow", "zurich", "paris", "bangkok", "budapest", "austin", "berlin", "ottawa", "phoenix", "goa",
              "amman", "nairobi", "manila"),
    "val": ("cph", "sf"),
    "test": ("miami", "athens", "buenosaires", "stockholm", "bengaluru", "kampala"),
}
SUBTASKS = ("all", "s2w", "w2s", "o2n", "n2o", "d2n", "n2d")
SIDES = {"database": "database", "queries": "query"}
FILES = ("postprocessed.csv", "raw.csv", "subtask_index.csv", "seq_info.csv")
TRUE = {"true", "1", "1.0", "yes"}


def train_val(path: Path) -> Path | None:
    """The ``train_val`` folder of an MSLS root (the root itself, or the folder given), or None."""
    for candidate in (path / "train_val", path):
        if candidate.is_dir() and candidate.name == "train_val":
            return candidate
    return None


def detect(path: Path, options: ReadOptions) -> bool:
    """An MSLS root (or its ``train_val``): a city folder holding ``query/postprocessed.csv``."""
    folder = train_val(path) if path.is_dir() else None
    return folder is not None and any((c / "query" / "postprocessed.csv").is_file() for c in folder.iterdir())


def parse_split(split: str | None, folder: Path) -> tuple[tuple[str, ...], str]:
    """``"val"`` / ``"train"`` / ``"cph,sf"`` with an optional ``:subtask`` -> (cities, subtask)."""
    text, _, subtask = (split or "val").partition(":")
    subtask = subtask or "all"
    if subtask not in SUBTASKS:
        raise DatasetError(f"{folder}: unknown MSLS subtask {subtask!r}; choose one of {', '.join(SUBTASKS)}")
    if text == "test" or any(c in CITIES["test"] for c in text.split(",")):
        raise DatasetError(f"{folder}: the MSLS test cities carry no positions (results come from the official "
                           "server); evaluate on val, or rank with `netvlad retrieve`")
    cities = CITIES[text] if text in CITIES else tuple(c.strip() for c in text.split(",") if c.strip())
    if text == "train":  # the training cities present in this copy
        cities = tuple(c for c in cities if (folder / c).is_dir())
    missing = [c for c in cities if not (folder / c).is_dir()]
    if missing or not cities:
        found = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise DatasetError(f"{folder / (missing[0] if missing else '')}: MSLS city not found (cities here: "
                           f"{', '.join(found) or 'none'}); pass split='val', 'train' or city names")
    return cities, subtask


def read_table(path: Path) -> list[tuple[int, dict]]:
    """``(line number, row)`` of an MSLS CSV (first column: the row index, kept as ``""``)."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing; an MSLS side folder holds {', '.join(FILES)} and images/")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return [(i + 2, {(k or "").strip(): (v or "").strip() for k, v in row.items()}) for i, row in enumerate(reader)]


def _by_key(path: Path, rows: list[tuple[int, dict]]) -> dict[str, dict]:
    if rows and "key" not in rows[0][1]:
        raise DatasetError(f"{path}: no key column; re-extract the MSLS metadata")
    return {row["key"]: row for _, row in rows}


def _position(row: dict) -> tuple[float, float] | None:
    try:
        point = float(row["easting"]), float(row["northing"])
    except (KeyError, ValueError):
        return None
    return point if np.isfinite(point).all() else None


def read_side(folder: Path, city: str, side: str, subtask: str, skips: Skips) -> tuple[list[str], list, list[bool]]:
    """Names (``city/side/images/key.jpg``), UTM positions and night flags of one side of one city."""
    base = folder / city / side
    post = read_table(base / "postprocessed.csv")
    raw = _by_key(base / "raw.csv", read_table(base / "raw.csv"))
    subtask_rows = read_table(base / "subtask_index.csv")
    if subtask_rows and subtask not in subtask_rows[0][1]:
        raise DatasetError(f"{base / 'subtask_index.csv'}: no {subtask!r} column; re-extract the MSLS metadata")
    keyed = "key" in (subtask_rows[0][1] if subtask_rows else {})
    in_subtask = ({r["key"]: r[subtask].lower() in TRUE for _, r in subtask_rows} if keyed
                  else [r[subtask].lower() in TRUE for _, r in subtask_rows])  # positional, as the official code
    names, points, night = [], [], []
    for position, (line, row) in enumerate(post):
        key, where = row.get("key", ""), f"{base / 'postprocessed.csv'}:{line}"
        if key not in raw:
            skips.bad(where, f"key {key!r} is not in raw.csv", "use the metadata of one MSLS release")
            continue
        chosen = in_subtask.get(key, False) if keyed else position < len(in_subtask) and in_subtask[position]
        if not chosen or raw[key].get("pano", "").lower() in TRUE:
            continue
        point = _position(row)
        if point is None:
            skips.bad(where, f"key {key}: easting/northing missing or not a number", "fix postprocessed.csv")
            continue
        names.append(f"{city}/{side}/images/{key}.jpg")
        points.append(point)
        night.append(row.get("night", "").lower() in TRUE)
    return names, points, night


@register_reader("msls", "Mapillary Street-Level Sequences root (train_val/<city>/{query,database})", detect, 25)
def read(path: Path, options: ReadOptions) -> GeoDataset:
    """Load MSLS cities (``options.split``, default the official val cities); see the module docstring."""
    folder = train_val(path)
    if folder is None:
        raise DatasetError(f"{path}: no train_val folder; point at the MSLS root")
    cities, subtask = parse_split(options.split, folder)
    skips = Skips(options.skip_bad)
    lists, conditions = {}, {}
    for role, side in SIDES.items():
        names, points, night = [], [], []
        for city in cities:
            n, p, d = read_side(folder, city, side, subtask, skips)
            names, points, night = names + n, points + p, night + d
        keep = check_files(folder, names, skips)
        idx = np.flatnonzero(keep)
        utm = np.asarray(points, np.float64).reshape(-1, 2)[idx]
        lists[role] = ImageList(folder, tuple(names[i] for i in idx), utm,
                                sequence=sequence_order(folder, [names[i] for i in idx]))
        if role == "queries":
            conditions = {names[i]: "night" if night[i] else "day" for i in idx}
    info = DatasetInfo(format="msls", dataset="msls", cities=cities, subtask=subtask, skipped=skips.entries,
                       query_conditions=conditions, group_by="city")
    logger.info("MSLS %s (%s): %d queries, %d database images", ",".join(cities), subtask, len(lists["queries"]),
                len(lists["database"]))
    return GeoDataset(f"msls-{'+'.join(cities)}", lists["database"], lists["queries"], info=info)


def sequence_order(folder: Path, names: list[str]) -> SequenceOrder | None:
    """Sequence key and frame number of each image from its side's ``seq_info.csv`` (None where a side lacks the
    file or an image is not in it)."""
    tables: dict[str, dict[str, dict]] = {}
    keys, frames = [], []
    for name in names:
        side = name.rsplit("/images/", 1)[0]
        if side not in tables:
            path = folder / side / "seq_info.csv"
            tables[side] = _by_key(path, read_table(path)) if path.is_file() else {}
        row = tables[side].get(name.rsplit("/", 1)[-1].rsplit(".", 1)[0])
        try:
            keys.append(f"{side.split('/', 1)[0]}/{row['sequence_key']}")
            frames.append(int(float(row["frame_number"])))
        except (TypeError, KeyError, ValueError):
            return None
    return SequenceOrder.from_keys(keys, frames) if names else None


def city_of(name: str) -> str:
    """The city of an MSLS image name (its first path component)."""
    return name.split("/", 1)[0]
