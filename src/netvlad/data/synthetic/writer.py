"""Write a generated city as a DVGB dataset (``images/{train,val,test}/{database,queries}/*.jpg``).

File names: DVGB names (:func:`netvlad.data.convert.dvgb_name`): the UTM metres recorded with GPS noise, lat/lon
from the utm package, the image id (``db00001``, ``q00001_night``) in the panorama-id field. ``poses.csv`` keeps
the true pose of every view, ``city.json`` the config and ``sequences.csv`` the sequence order: each drive along a
street, looking to one side, is a sequence (queries: the sampled positions of it, with gaps).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import shutil
import time
from pathlib import Path

import numpy as np
import utm
from PIL import Image

from netvlad.data.convert import dvgb_name
from netvlad.data.synthetic.cameras import SPLITS, Views, database_views, query_views, split_boundaries, street_passes
from netvlad.data.synthetic.city import City, build_city
from netvlad.data.synthetic.city_config import CityConfig
from netvlad.data.synthetic.conditions import CONDITIONS
from netvlad.data.synthetic.render import Pose
from netvlad.data.synthetic.view import render_view
from netvlad.errors import BadInputError

logger = logging.getLogger(__name__)

KINDS = ("database", "queries")
POSE_COLUMNS = ("split", "kind", "name", "x", "y", "easting", "northing", "heading", "height", "pitch", "condition",
                "anchor")


def _image_id(kind: str, index: int, views: Views) -> str:
    return f"db{index:05d}" if kind == "database" else f"q{index:05d}_{views.condition[index]}"


def _render(city: City, config: CityConfig, kind: str, views: Views, i: int) -> np.ndarray:
    """Image of view ``i`` of a pass; its random details depend only on the seed, the pass and ``i``."""
    pose = Pose(views.xy[i, 0], views.xy[i, 1], views.heading[i], views.height[i], views.pitch[i])
    seed = [config.seed, 10, KINDS.index(kind), i]
    return render_view(city, config, pose, CONDITIONS[views.condition[i]], seed)


def _prepare(out: Path, config: CityConfig, overwrite: bool) -> bool:
    """True when ``out`` already holds this very city; clear or refuse a different one."""
    marker = out / "city.json"
    if marker.is_file() and json.loads(marker.read_text()).get("config") == json.loads(config.to_json()):
        return True
    if (out / "images").exists() or marker.exists():
        if not overwrite:
            raise BadInputError(f"{out} holds another dataset; remove it, write elsewhere, or pass overwrite=True",
                                path=out, hint="another --out, or --overwrite")
        shutil.rmtree(out / "images", ignore_errors=True)
        marker.unlink(missing_ok=True)
    return False


_SHARED: dict = {}  # the city and its passes, inherited by forked workers instead of pickled


def _encode(job: tuple[str, int]) -> bytes:
    """JPEG bytes of one view (runs in a worker, or in the main process)."""
    city, config, passes = _SHARED["city"], _SHARED["config"], _SHARED["passes"]
    kind, i = job
    buffer = io.BytesIO()
    Image.fromarray(_render(city, config, kind, passes[kind], i)).save(buffer, "JPEG", quality=config.jpeg_quality)
    return buffer.getvalue()


def _encoded(jobs: list[tuple[str, int]], workers: int):
    """JPEG bytes of ``jobs`` in order, rendered by ``workers`` forked processes where possible."""
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(_encode, jobs, chunksize=16)
    else:
        yield from map(_encode, jobs)


def _sequence(views: Views, i: int, streets: tuple[np.ndarray, ...]) -> tuple[str, int]:
    """Sequence key (street and the side the camera looks to) and frame number (position along the street)."""
    street, index = streets[0][views.anchor[i]], streets[1][views.anchor[i]]
    return f"street{street:03d}-{'left' if i % 2 == 0 else 'right'}", int(index)


def _write_all(out: Path, config: CityConfig, passes: dict[str, Views], writer, bar, workers: int,
               sequences=None, streets=None) -> None:
    """Render, save and record every view of every pass (and its sequence order in ``sequences``)."""
    east0, north0 = config.origin
    jobs = [(kind, i) for kind, views in passes.items() for i in range(len(views))]
    for (kind, i), data in zip(jobs, _encoded(jobs, workers), strict=True):
        views, split = passes[kind], SPLITS[passes[kind].split[i]]
        east, north = views.recorded[i, 0] + east0, views.recorded[i, 1] + north0
        latlon = utm.to_latlon(east, north, *config.zone)
        name = dvgb_name(east, north, config.zone, latlon, capture=_image_id(kind, i, views))
        (out / "images" / split / kind / name).write_bytes(data)
        writer.writerow([split, kind, name, f"{views.xy[i, 0]:.3f}", f"{views.xy[i, 1]:.3f}", f"{east:.2f}",
                         f"{north:.2f}", f"{views.heading[i]:.2f}", f"{views.height[i]:.3f}",
                         f"{views.pitch[i]:.3f}", views.condition[i], int(views.anchor[i])])
        if sequences is not None:
            key = _sequence(views, i, streets) if kind == "database" else _query_sequence(views, i, streets)
            sequences.writerow([split, kind, name, *key])
        bar.update(1)


def _query_sequence(views: Views, i: int, streets: tuple[np.ndarray, ...]) -> tuple[str, int]:
    """A query's sequence: the street it was drawn on and the side it looks to (its heading's sign)."""
    street, index = streets[0][views.anchor[i]], streets[1][views.anchor[i]]
    left = ((views.heading[i] - streets[2][views.anchor[i]] + 180) % 360) - 180 > 0
    return f"street{street:03d}-{'left' if left else 'right'}", int(index)


def generate_city(config: CityConfig, out_dir: str | Path, progress: bool = False, *, overwrite: bool = False,
                  workers: int = 1) -> Path:
    """Generate the city of ``config`` into ``out_dir`` (a DVGB dataset root); return that folder.

    An existing folder generated from the same config is reused as is. Besides the images it holds
    ``poses.csv`` (true local pose, recorded UTM position and condition of every image) and ``city.json``.
    ``workers`` > 1 renders in that many forked processes; the files are the same either way.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    if _prepare(out, config, overwrite):
        logger.info("%s already holds this city (seed %d); reusing it", out, config.seed)
        return out
    start = time.perf_counter()
    city = build_city(config)
    passes = {"database": database_views(city, config), "queries": query_views(city, config)}
    for split in SPLITS:
        for kind in KINDS:
            (out / "images" / split / kind).mkdir(parents=True, exist_ok=True)
    total = sum(len(v) for v in passes.values())
    with open(out / "poses.csv", "w", newline="") as handle, tqdm(total=total, disable=not progress,
                                                                     desc="rendering city", unit="img") as bar, \
            open(out / "sequences.csv", "w", newline="") as seq_handle:
        writer, sequences = csv.writer(handle), csv.writer(seq_handle)
        writer.writerow(POSE_COLUMNS)
        sequences.writerow(("split", "kind", "name", "sequence", "frame"))
        _SHARED.update(city=city, config=config, passes=passes)
        try:
            _write_all(out, config, passes, writer, bar, workers, sequences, street_passes(city, config))
        finally:
            _SHARED.clear()
    counts = {s: {k: int((v.split == i).sum()) for k, v in passes.items()} for i, s in enumerate(SPLITS)}
    bounds = (split_boundaries(city, config) + config.origin[0]).round(2).tolist()
    meta = {"config": json.loads(config.to_json()), "counts": counts, "split_boundaries_easting": bounds,
            "extent_local": list(city.extent), "format": "dvgb"}
    (out / "city.json").write_text(json.dumps(meta, indent=1))
    logger.info("generated a city of %d images in %s (%.1f s): %s", total, out, time.perf_counter() - start, counts)
    return out
