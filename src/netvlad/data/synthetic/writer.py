"""Write a generated city as a DVGB dataset (``images/{train,val,test}/{database,queries}/*.jpg``).

File names: DVGB names (:func:`netvlad.data.convert.dvgb_name`): the UTM metres recorded with GPS noise, lat/lon
from the utm package, the image id (``db00001``, ``q00001_night``) in the panorama-id field. ``poses.csv`` keeps
the true pose of every view, ``city.json`` the config and ``sequences.csv`` the sequence order: each drive along a
street, looking to one side, is a sequence (queries: the sampled positions of it, with gaps).
"""

from __future__ import annotations

import csv
import hashlib
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
from netvlad.files import atomic_write

logger = logging.getLogger(__name__)

KINDS = ("database", "queries")
PROGRESS = "city.progress"  # while generating: the config (first line), then "image-path sha1" per finished image
POSE_COLUMNS = ("split", "kind", "name", "x", "y", "easting", "northing", "heading", "height", "pitch", "condition",
                "anchor")


def _image_id(kind: str, index: int, views: Views) -> str:
    return f"db{index:05d}" if kind == "database" else f"q{index:05d}_{views.condition[index]}"


def _render(city: City, config: CityConfig, kind: str, views: Views, i: int) -> np.ndarray:
    """Image of view ``i`` of a pass; its random details depend only on the seed, the pass and ``i``."""
    pose = Pose(views.xy[i, 0], views.xy[i, 1], views.heading[i], views.height[i], views.pitch[i])
    seed = [config.seed, 10, KINDS.index(kind), i]
    return render_view(city, config, pose, CONDITIONS[views.condition[i]], seed)


def _prepare(out: Path, config: CityConfig, overwrite: bool) -> dict[str, str] | None:
    """None when ``out`` already holds this very city; else the images an interrupted generation of this city
    finished ({path under ``out``: SHA-1}, empty for a fresh start). A different dataset is cleared or refused."""
    marker, progress = out / "city.json", out / PROGRESS
    wanted = json.loads(config.to_json())
    if marker.is_file() and json.loads(marker.read_text()).get("config") == wanted:
        return None
    finished = _finished(progress, wanted)
    if finished is not None:
        return finished
    if (out / "images").exists() or marker.exists() or progress.exists():
        if not overwrite:
            raise BadInputError(f"{out} holds another dataset; remove it, write elsewhere, or pass overwrite=True",
                                path=out, hint="another --out, or --overwrite")
        shutil.rmtree(out / "images", ignore_errors=True)
        marker.unlink(missing_ok=True)
        progress.unlink(missing_ok=True)
    return {}


def _finished(progress: Path, config: dict) -> dict[str, str] | None:
    """{image path: SHA-1} listed by an interrupted generation's ``progress`` file when it was generating
    ``config`` (a torn last line is ignored); None without one, or for another config."""
    try:
        lines = progress.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    try:
        if not lines or json.loads(lines[0]) != config:
            return None
    except ValueError:
        return None
    entries = (line.split(" ") for line in lines[1:])
    return {e[0]: e[1] for e in entries if len(e) == 2 and len(e[1]) == 40}


def _sha1(path: Path) -> str | None:
    """SHA-1 hex digest of the file at ``path``; None when it cannot be read."""
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return None


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


def _records(config: CityConfig, passes: dict[str, Views], streets) -> list[tuple[str, list, list]]:
    """(image path under the city folder, its ``poses.csv`` row, its ``sequences.csv`` row) of every view, in
    order."""
    east0, north0 = config.origin
    out = []
    for kind, views in passes.items():
        for i in range(len(views)):
            split = SPLITS[views.split[i]]
            east, north = views.recorded[i, 0] + east0, views.recorded[i, 1] + north0
            latlon = utm.to_latlon(east, north, *config.zone)
            name = dvgb_name(east, north, config.zone, latlon, capture=_image_id(kind, i, views))
            pose = [split, kind, name, f"{views.xy[i, 0]:.3f}", f"{views.xy[i, 1]:.3f}", f"{east:.2f}",
                    f"{north:.2f}", f"{views.heading[i]:.2f}", f"{views.height[i]:.3f}", f"{views.pitch[i]:.3f}",
                    views.condition[i], int(views.anchor[i])]
            key = _sequence(views, i, streets) if kind == "database" else _query_sequence(views, i, streets)
            out.append((f"images/{split}/{kind}/{name}", pose, [split, kind, name, *key]))
    return out


def _write_images(out: Path, jobs: list[tuple[str, int]], paths: list[str], workers: int, progress, bar) -> None:
    """Render ``jobs`` into ``paths`` (under ``out``), each written atomically and then listed with its SHA-1 in
    the open ``progress`` file, so an interrupted run keeps what it finished."""
    for path, data in zip(paths, _encoded(jobs, workers), strict=True):
        atomic_write(out / path, lambda tmp, data=data: tmp.write_bytes(data))
        progress.write(f"{path} {hashlib.sha1(data).hexdigest()}\n")
        progress.flush()
        bar.update(1)


def _write_table(path: Path, header, rows) -> None:
    """A CSV file of ``header`` and ``rows``, written atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)

    atomic_write(path, write)


def _query_sequence(views: Views, i: int, streets: tuple[np.ndarray, ...]) -> tuple[str, int]:
    """A query's sequence: the street it was drawn on and the side it looks to (its heading's sign)."""
    street, index = streets[0][views.anchor[i]], streets[1][views.anchor[i]]
    left = ((views.heading[i] - streets[2][views.anchor[i]] + 180) % 360) - 180 > 0
    return f"street{street:03d}-{'left' if left else 'right'}", int(index)


def generate_city(config: CityConfig, out_dir: str | Path, progress: bool = False, *, overwrite: bool = False,
                  workers: int = 1) -> Path:
    """Generate the city of ``config`` into ``out_dir`` (a DVGB dataset root); return that folder.

    An existing folder generated from the same config is reused as is; one whose generation of the same config was
    interrupted is resumed: the images it finished are kept where their SHA-1 still matches (listed in
    :data:`PROGRESS`), the rest rendered, giving the same files as an uninterrupted run. Besides the images it
    holds ``poses.csv`` (true local pose, recorded UTM position and condition of every image),
    ``sequences.csv`` and ``city.json`` (written last). ``workers`` > 1 renders in that many forked processes;
    the files are the same either way.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    finished = _prepare(out, config, overwrite)
    if finished is None:
        logger.info("%s already holds this city (seed %d); reusing it", out, config.seed)
        return out
    start = time.perf_counter()
    city = build_city(config)
    passes = {"database": database_views(city, config), "queries": query_views(city, config)}
    records = _records(config, passes, street_passes(city, config))
    jobs = [(kind, i) for kind, views in passes.items() for i in range(len(views))]
    for split in SPLITS:
        for kind in KINDS:
            folder = out / "images" / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for stray in folder.glob(".*.tmp"):  # an interrupted atomic write
                stray.unlink()
    kept = {path for path, _, _ in records if path in finished and _sha1(out / path) == finished[path]}
    todo = [(job, path) for job, (path, _, _) in zip(jobs, records, strict=True) if path not in kept]
    if finished:
        logger.info("%s: resuming an interrupted generation: %d of %d images kept, %d to render", out, len(kept),
                    len(jobs), len(todo))
    with open(out / PROGRESS, "w", encoding="utf-8") as handle, tqdm(
            total=len(jobs), initial=len(kept), disable=not progress, desc="rendering city", unit="img") as bar:
        handle.write(json.dumps(json.loads(config.to_json()), sort_keys=True) + "\n")
        handle.writelines(f"{path} {finished[path]}\n" for path, _, _ in records if path in kept)
        handle.flush()
        _SHARED.update(city=city, config=config, passes=passes)
        try:
            _write_images(out, [job for job, _ in todo], [path for _, path in todo], workers, handle, bar)
        finally:
            _SHARED.clear()
    _write_table(out / "poses.csv", POSE_COLUMNS, [pose for _, pose, _ in records])
    _write_table(out / "sequences.csv", ("split", "kind", "name", "sequence", "frame"),
                 [row for _, _, row in records])
    counts = {s: {k: int((v.split == i).sum()) for k, v in passes.items()} for i, s in enumerate(SPLITS)}
    bounds = (split_boundaries(city, config) + config.origin[0]).round(2).tolist()
    meta = {"config": json.loads(config.to_json()), "counts": counts, "split_boundaries_easting": bounds,
            "extent_local": list(city.extent), "format": "dvgb"}
    atomic_write(out / "city.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
    (out / PROGRESS).unlink()
    logger.info("generated a city of %d images in %s (%.1f s): %s", len(jobs), out, time.perf_counter() - start,
                counts)
    return out
