"""A CSV manifest: ``path,split,lat,lon`` or ``path,split,easting,northing[,zone]`` with a header row. ``split`` is
``database`` or ``query`` (also ``db``/``queries``); an optional ``time`` (or ``pano``) column marks captures
excluded from training positives; an optional ``condition`` column (day, night, winter...) labels queries for
Recall@N per condition; optional ``sequence`` and ``frame`` (or numeric ``time``) columns record sequence order
(``frame`` alone: one sequence per side; ``frame`` gives frame numbers, so gaps show; ``time`` with ``sequence``
gives the order). Paths are relative to ``image_root`` (default: the CSV's folder).
"""

from __future__ import annotations

import csv
import logging
import math
import re
from pathlib import Path

import numpy as np
import utm

from netvlad.data import geo
from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.info import DatasetInfo
from netvlad.data.readers.common import DatasetError, Skips, check_files, duplicates_mask, single_zone
from netvlad.data.readers.registry import ReadOptions, register_reader
from netvlad.data.sequences import SequenceOrder
from netvlad.limits import FRAME_NUMBER

logger = logging.getLogger(__name__)

ROLES = {"database": "database", "db": "database", "query": "queries", "queries": "queries", "q": "queries"}
LATLON, UTM = ("lat", "lon"), ("easting", "northing")


def detect(path: Path, options: ReadOptions) -> bool:
    """A file ending in .csv."""
    return path.is_file() and path.suffix.lower() == ".csv"


def read_manifest(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """Header (lower-case) and ``(line number, row)`` pairs; error on a missing column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            reader.fieldnames = header
            rows = [(i + 2, {k: (v or "").strip() for k, v in row.items() if k}) for i, row in enumerate(reader)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"{path}: not a UTF-8 CSV manifest ({error}); need a text file with a header "
                           "path,split,lat,lon or path,split,easting,northing", path=path) from None
    if "path" not in header or "split" not in header or not (set(LATLON) <= set(header) or set(UTM) <= set(header)):
        raise DatasetError(f"{path}: header is {','.join(header) or 'empty'}; need path,split,lat,lon or "
                           "path,split,easting,northing[,zone]")
    return header, rows


def parse_zone(text: str) -> tuple[int, str] | None:
    """``"17T"`` / ``"17 T"`` / ``"17"`` -> (17, "T") / (17, "N")."""
    match = re.fullmatch(r"(\d{1,2})\s*([C-Xc-x]?)", text)
    return (int(match.group(1)), (match.group(2) or "N").upper()) if match else None


def parse_row(row: dict, columns: tuple[str, str]) -> tuple[float, float] | None:
    """The two coordinate columns as finite floats, or None."""
    try:
        a, b = float(row[columns[0]]), float(row[columns[1]])
    except (KeyError, ValueError):
        return None
    return (a, b) if np.isfinite([a, b]).all() else None


def positions(path: Path, rows: list[tuple[int, dict]], latlon: bool, skips: Skips) -> tuple:
    """Per row: UTM (N, 2), zone keys, zone letters and a keep mask (bad rows skipped or raised)."""
    points, keys, letters = np.full((len(rows), 2), np.nan), [""] * len(rows), [""] * len(rows)
    keep = np.ones(len(rows), dtype=bool)
    for i, (line, row) in enumerate(rows):
        value = parse_row(row, LATLON if latlon else UTM)
        zone = parse_zone(row.get("zone", "")) if not latlon and row.get("zone") else None
        where = f"{path}:{line} ({row.get('path', '')})"
        if ROLES.get(row.get("split", "").lower()) is None:
            skips.bad(where, f"split is {row.get('split')!r}", "use database or query")
        elif value is None or (latlon and not (abs(value[0]) <= 84 and abs(value[1]) <= 180)):
            skips.bad(where, "GPS position missing, NaN or out of range", "fill in the coordinates")
        elif not latlon and row.get("zone") and zone is None:
            skips.bad(where, f"zone {row['zone']!r} is not like 17T", "write the UTM zone as number and letter")
        else:
            points[i] = value
            if zone:
                keys[i], letters[i] = f"{zone[0]}{'N' if zone[1] >= 'N' else 'S'}", zone[1]
            continue
        keep[i] = False
    if latlon and keep.any():
        idx = np.flatnonzero(keep)
        projected, _, zone_keys = geo.latlon_to_utm(points[idx, 0], points[idx, 1])
        points[idx] = projected
        for j, i in enumerate(idx):
            keys[i], letters[i] = zone_keys[j], utm.latitude_to_zone_letter(float(rows[i][1]["lat"]))
    return points, np.array(keys, dtype=object), letters, keep


def sequence_order(path: Path, header: list[str], rows: list[tuple[int, dict]], role: str) -> SequenceOrder | None:
    """The ``sequence`` / ``frame`` / ``time`` columns of ``rows`` as a :class:`SequenceOrder` (None without them);
    a value that is not a number is an error naming the line."""
    column = "frame" if "frame" in header else "time" if {"time", "sequence"} <= set(header) else None
    if column is None:
        return None
    values = []
    for line, row in rows:
        try:
            value = float(row.get(column, ""))
        except ValueError:
            raise DatasetError(f"{path}:{line}: {column} is {row.get(column)!r}, not a number; give every image of "
                               "a sequence its frame number (or time)", path=path) from None
        if not (FRAME_NUMBER.accepts(value) if column == "frame" else math.isfinite(value)):
            wanted = FRAME_NUMBER.describe() if column == "frame" else "a finite number"
            raise DatasetError(f"{path}:{line}: {column} is {row.get(column)!r}; it must be {wanted}", path=path)
        values.append(value)
    keys = [row.get("sequence", "") if "sequence" in header else role for _, row in rows]
    values = np.asarray(values)
    if column == "frame":
        return SequenceOrder.from_keys(keys, values.astype(np.int64))
    order = SequenceOrder.from_keys(keys, np.zeros(len(rows), np.int64))
    frames = np.empty(len(rows), np.int64)
    for sequence in np.unique(order.ids):  # times: the rank within the sequence
        members = np.flatnonzero(order.ids == sequence)
        frames[members[np.argsort(values[members], kind="stable")]] = np.arange(len(members))
    return SequenceOrder(order.ids, frames, order.names)


@register_reader("csv", "manifest path,split,lat,lon or path,split,easting,northing[,zone]", detect, 15)
def read(path: Path, options: ReadOptions) -> GeoDataset:
    """Load a CSV manifest (see the module docstring)."""
    header, rows = read_manifest(path)
    if not rows:
        raise DatasetError(f"{path}: manifest has a header but no rows; add one line per image")
    skips = Skips(options.skip_bad)
    points, keys, letters, keep = positions(path, rows, set(LATLON) <= set(header), skips)
    names = [row["path"] for _, row in rows]
    known = keep & (keys != "")
    zone_ok = np.ones(len(rows), dtype=bool)
    zone_ok[known] = single_zone(keys[known], [f"{path}:{rows[i][0]} ({names[i]})" for i in np.flatnonzero(known)],
                                 skips)
    keep &= zone_ok
    zone_keys = {keys[i] for i in np.flatnonzero(keep & (keys != ""))}
    zone = None
    if len(zone_keys) == 1:
        majority = max((letters[i] for i in np.flatnonzero(keep & (keys != ""))), key=letters.count)
        zone = (int(next(iter(zone_keys))[:-1]), majority)
    root = options.image_root or path.parent
    time_column = next((c for c in ("time", "timestamp", "pano", "pano_id") if c in header), None)
    vocabulary: dict[str, int] = {}
    lists = {}
    for role in ("database", "queries"):
        idx = np.flatnonzero(keep & np.array([ROLES.get(r["split"].lower()) == role for _, r in rows]))
        role_names = [names[i] for i in idx]
        mask = duplicates_mask(role_names, root, skips)
        mask[mask] &= check_files(root, [n for n, m in zip(role_names, mask, strict=True) if m], skips)
        idx = idx[mask]
        times = None
        if time_column:
            values = [rows[i][1].get(time_column, "") for i in idx]
            times = np.array([vocabulary.setdefault(v, len(vocabulary)) if v else np.nan for v in values], float)
        lists[role] = ImageList(root, tuple(names[i] for i in idx), points[idx], zone, times,
                                sequence=sequence_order(path, header, [rows[i] for i in idx], role))
    conditions = None
    if "condition" in header:
        conditions = {row["path"]: row["condition"] for _, row in rows
                      if row.get("condition") and ROLES.get(row["split"].lower()) == "queries"}
    info = DatasetInfo(format="csv", skipped=skips.entries, query_conditions=conditions)
    return GeoDataset(path.stem, lists["database"], lists["queries"], info=info)


