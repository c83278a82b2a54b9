"""Write any dataset in the DVGB layout (``images/<split>/{database,queries}/@east@north@...@.ext``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from netvlad.data import geo
from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.errors import BadInputError

logger = logging.getLogger(__name__)

SIDECAR = "netvlad_dataset.json"  # what DVGB names cannot carry: sequence frames, tolerance and spacing


def dvgb_name(east: float, north: float, zone: tuple[int, str] | None = None, latlon: tuple[float, float] | None = None,
              capture: str = "", note: str = "", suffix: str = ".jpg") -> str:
    """A DVGB file name: ``@east@north@zone@letter@lat@lon@pano@tile@heading@pitch@roll@height@time@note@.ext``.

    UTM metres and WGS84 degrees; ``capture`` goes into the panorama-id field (images sharing it are one capture),
    ``note`` into the last one. The one writer of DVGB names (conversion and the synthetic city use it).
    """
    zone_fields = f"{zone[0]:02d}@{zone[1]}" if zone else "@"
    ll = f"{latlon[0]:09.5f}@{latlon[1]:010.5f}" if latlon is not None else "@"
    # zero-padded as the downloader's format_coord(…, 7, 2): names sort in easting order
    return f"@{east:010.2f}@{north:010.2f}@{zone_fields}@{ll}@{capture}@@@@@@@{note}@{suffix}"


def dvgb_names(images: ImageList) -> list[str]:
    """DVGB names for ``images``: positions, zone, lat/lon (where the zone is known), capture id, original name."""
    latlon = geo.utm_to_latlon(images.utm, images.zone) if images.zone else None
    names = []
    captures = images.times if images.times is not None else images.panoramas  # a panorama is one capture
    for i, name in enumerate(images.names):
        capture = "" if captures is None or not np.isfinite(captures[i]) else f"{int(captures[i])}"
        note = Path(name).with_suffix("").as_posix().replace("/", "_").replace("@", "_")
        names.append(dvgb_name(*images.utm[i], images.zone, None if latlon is None else tuple(latlon[i]), capture,
                               note, Path(name).suffix.lower() or ".jpg"))
    if len(set(names)) != len(names):
        raise ValueError(f"{images.root}: two images map to one DVGB name; rename them to unique file names")
    return names


def place(source: Path, target: Path, copy: bool) -> None:
    """Copy ``source`` to ``target``, or link it (absolute symlink)."""
    if copy:
        shutil.copy2(source, target)
    else:
        os.symlink(source.resolve(), target)


def convert_to_dvgb(dataset: GeoDataset, out: Path | str, split: str = "test", copy: bool = False) -> Path:
    """Write ``dataset`` under ``out/images/<split>/`` as DVGB (symlinks, or copies with ``copy``); returns the
    split folder. Sequences also get ``out/netvlad_dataset.json`` so that frames and tolerance round-trip.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> small = city.subset(query_indices=np.arange(2), database_indices=np.arange(5), name="small")
        >>> split = convert_to_dvgb(small, "small")  # symlinks to the images
        >>> split, open_dataset("small")
        (PosixPath('small/images/test'), < small-test - #q: 2; #db: 5 >)
    """
    out = Path(out)
    folder = out / "images" / split
    if dataset.info.format == "bag":
        raise BadInputError(f"{dataset.database.root}: images inside a ROS bag cannot be linked or copied as DVGB "
                            "files; every command reads the bag itself", path=dataset.database.root)
    if folder.exists() and any(folder.iterdir()):
        raise BadInputError(f"{folder}: already holds files; choose an empty output folder", path=folder,
                            hint="another --out")
    for side, images in (("database", dataset.database), ("queries", dataset.queries)):
        target = folder / side
        target.mkdir(parents=True, exist_ok=True)
        for source, name in zip(images.paths(), dvgb_names(images), strict=True):
            if not source.is_file():
                raise BadInputError(f"{source}: image file not found; fix the dataset or open it with skip_bad=True",
                                    path=source, hint="--skip-bad", skippable=True)
            place(source, target / name, copy)
        logger.info("%s: wrote %d %s images", target, len(images), side)
    if dataset.is_sequence:
        info = {"name": dataset.name, "frame_tolerance": dataset.frame_tolerance,
                "spacing": dataset.info.spacing}
        (out / SIDECAR).write_text(json.dumps(info, indent=1))
    return folder
