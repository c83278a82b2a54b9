"""A folder of photos whose EXIF carries GPS: ``<root>/{database,queries}/`` (or named with ``database``/``queries``),
or a single folder of photos (all database, no queries). Lat/lon go to UTM with the ``utm`` package; all photos
must lie in one UTM zone (or ``skip_bad=True`` keeps the majority zone).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from netvlad.data import geo
from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.info import DatasetInfo
from netvlad.data.readers.common import Skips, first_image, has_images, list_images, pair_dirs, single_zone
from netvlad.data.readers.registry import ReadOptions, register_reader

logger = logging.getLogger(__name__)

GPS_IFD = 0x8825
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4


def gps_latlon(path: Path) -> tuple[float, float] | None:
    """(lat, lon) degrees from the photo's EXIF GPS block, or None when absent."""
    with Image.open(path) as image:
        gps = image.getexif().get_ifd(GPS_IFD)
    if not all(k in gps for k in (GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON)):
        return None

    def degrees(dms, ref) -> float:
        d, m, s = (float(v) for v in dms)
        ref = ref.decode("ascii", "replace") if isinstance(ref, bytes) else str(ref)
        sign = -1.0 if ref.strip("\x00 ").upper() in ("S", "W") else 1.0
        return sign * (d + m / 60.0 + s / 3600.0)

    return degrees(gps[GPS_LAT], gps[GPS_LAT_REF]), degrees(gps[GPS_LON], gps[GPS_LON_REF])


def folders(path: Path, options: ReadOptions) -> tuple[Path, Path | None]:
    """The database folder and the query folder (None for a single folder of photos)."""
    db_dir, q_dir = pair_dirs(path, options)
    if db_dir.is_dir() or q_dir.is_dir() or options.database or options.queries:
        return db_dir, q_dir
    return path, None


def detect(path: Path, options: ReadOptions) -> bool:
    """A folder whose first photo (database side) carries EXIF GPS."""
    if not path.is_dir():
        return False
    db_dir, _ = folders(path, options)
    image = first_image(db_dir)
    if image is None or not has_images(db_dir):
        return False
    try:
        return gps_latlon(image) is not None
    except (UnidentifiedImageError, OSError, ValueError, ZeroDivisionError):
        return False


def read_side(folder: Path, skips: Skips) -> tuple[list[str], np.ndarray]:
    """Names and (lat, lon) ``(N, 2)`` of the photos in ``folder`` that carry GPS."""
    names, latlon = [], []
    for name in list_images(folder):
        try:
            value = gps_latlon(folder / name)
        except (UnidentifiedImageError, OSError, ValueError, ZeroDivisionError, SyntaxError) as error:
            skips.bad(folder / name, f"cannot read the photo ({error})", "re-export or remove it")
            continue
        if value is None or not np.isfinite(value).all() or abs(value[0]) > 84 or abs(value[1]) > 180:
            skips.bad(folder / name, "no usable EXIF GPS position", "geo-tag it or list it in a CSV manifest")
            continue
        names.append(name)
        latlon.append(value)
    return names, np.asarray(latlon, dtype=np.float64).reshape(-1, 2)


@register_reader("exif", "folder of photos with EXIF GPS ({database,queries}/ or one folder)", detect, 30)
def read(path: Path, options: ReadOptions) -> GeoDataset:
    """Load geo-tagged photos; their positions become UTM metres in one zone."""
    skips = Skips(options.skip_bad)
    db_dir, q_dir = folders(path, options)
    db_names, db_ll = read_side(db_dir, skips)
    q_names, q_ll = read_side(q_dir, skips) if q_dir is not None else ([], np.empty((0, 2)))
    if q_dir is None:
        logger.warning("%s: one folder of photos: all %d go to the database, no queries", path, len(db_names))
    latlon = np.concatenate([db_ll, q_ll])
    utm, zone, keys = geo.latlon_to_utm(latlon[:, 0], latlon[:, 1])
    keep = single_zone(keys, [str(db_dir / n) for n in db_names] + [str(q_dir / n) for n in q_names], skips)
    n = len(db_names)
    database = ImageList(db_dir, tuple(np.asarray(db_names, dtype=object)[keep[:n]]), utm[:n][keep[:n]], zone)
    queries = ImageList(q_dir or db_dir, tuple(np.asarray(q_names, dtype=object)[keep[n:]]), utm[n:][keep[n:]], zone)
    return GeoDataset(path.name, database, queries, info=DatasetInfo(format="exif", skipped=skips.entries))
