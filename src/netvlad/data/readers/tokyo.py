"""Tokyo 24/7 specifics of a dbStruct (``tokyo247.mat``): panoramas, query-set version, capture conditions.

- Database: 12 perspective cut-outs per Street View panorama, stored consecutively in ``dbImageFns``; the official
  scoring (``dbTokyo247.m``) takes image ``i`` (0-based) to be a cut-out of panorama ``i // 12``.
- Queries: the release has several query sets, told apart by their folder name: ``247query_subset_v2`` (the 315
  queries of the NetVLAD paper) and ``247query_v3`` (all 1,125 phone photos). The same dbStruct names queries
  ``247query_v3/00010.jpg`` or just ``00010.jpg`` depending on the copy, so the version is read from the names or,
  failing that, from the folder they were found in.
- Each query ``NNNNN.jpg`` comes with ``NNNNN.csv``, one row whose 6th field is the time of day: ``D`` (day),
  ``S`` (sunset) or ``N`` (night).
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

CUTOUTS_PER_PANORAMA = 12
TIME_OF_DAY = {"D": "day", "S": "sunset", "N": "night"}
QUERY_SET = re.compile(r"247query(?:_subset)?_v\d+", re.IGNORECASE)


def is_tokyo247(path: Path, query_names: list[str]) -> bool:
    """True for a Tokyo 24/7 dbStruct: named ``tokyo247*`` or listing ``247query*`` query images."""
    return "tokyo247" in path.stem.lower() or any(QUERY_SET.search(n) for n in query_names[:20])


def png_names(image_root: Path, names: list[str], named: str | None, candidates: tuple[str, ...]) -> list[str]:
    """``names`` with ``.png`` for ``.jpg`` where the files are PNG: the dbStruct lists ``.jpg`` cut-outs, the
    released ``database_gsv_vga`` archives hold ``.png`` files of the same names."""
    if not names or Path(names[0]).suffix.lower() != ".jpg":
        return names
    folders = [image_root / named] if named else [image_root / c for c in candidates]
    first = Path(names[0])
    if any((f / first).is_file() for f in folders) or not any((f / first.with_suffix(".png")).is_file()
                                                             for f in folders):
        return names
    logger.info("%s: the dbStruct lists .jpg database images, the files are .png; reading the .png files", image_root)
    return [str(Path(n).with_suffix(".png")) if n.lower().endswith(".jpg") else n for n in names]


def query_set(query_names: list[str], query_root: Path) -> str | None:
    """The query-set version (``247query_subset_v2``, ``247query_v3``...) from the names or their folder."""
    for text in (query_names[0] if query_names else "", query_root.as_posix()):
        found = QUERY_SET.findall(text)
        if found:
            return found[-1].lower()
    return None


def query_conditions(root: Path, names: tuple[str, ...]) -> dict[str, str]:
    """``{query name: "day" | "sunset" | "night"}`` from the ``.csv`` beside each query (absent ones left out)."""
    found: dict[str, str] = {}
    for name in names:
        sidecar = (root / name).with_suffix(".csv")
        if not sidecar.is_file():
            continue
        with open(sidecar, newline="", encoding="utf-8", errors="replace") as handle:
            row = next(csv.reader(handle), [])
        code = row[5].strip().upper() if len(row) > 5 else ""
        if code in TIME_OF_DAY:
            found[name] = TIME_OF_DAY[code]
        else:
            logger.warning("%s: 6th field %r is not D, S or N; time of day unknown", sidecar, code)
    if names and not found:
        logger.info("%s: no query .csv files with a time of day; no per-condition recall", root)
    return found


def tokyo_info(path: Path, db_count: int, query_names: list[str], query_root: Path, kept_queries: tuple[str, ...]
               ) -> dict:
    """The :class:`~netvlad.data.info.DatasetInfo` fields of a Tokyo 24/7 dataset (see the module docstring)."""
    info: dict = {"dataset": "tokyo247", "query_set": query_set(query_names, query_root)}
    if info["query_set"] is None:
        logger.warning("%s: query-set version unknown (no 247query_* folder in the names or the path)", path)
    if db_count % CUTOUTS_PER_PANORAMA:
        logger.warning("%s: %d database images is not a multiple of %d cut-outs per panorama; scoring per image, "
                       "not per panorama", path, db_count, CUTOUTS_PER_PANORAMA)
    else:
        info["cutouts_per_panorama"] = CUTOUTS_PER_PANORAMA  # the panorama ids are in database.panoramas
    conditions = query_conditions(query_root, kept_queries)
    if conditions:
        info["query_conditions"] = conditions
    return info
