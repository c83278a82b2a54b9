"""Dataset readers: a registry of formats, auto-detected, all loading into one :class:`GeoDataset`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from netvlad._lazy import lazy_exports
from netvlad.constants import EVAL_RADIUS_M
from netvlad.data.readers.registry import READERS, Reader, ReadOptions, find_reader, list_formats, register_reader

if TYPE_CHECKING:
    from netvlad.data.dataset import GeoDataset

logger = logging.getLogger(__name__)

# each reader module registers its format when READERS first asks for it (declared in the registry module)
__getattr__, __dir__, _ = lazy_exports(__name__, {"netvlad.data.readers.common": ("DatasetError",)})
__all__ = ["READERS", "DatasetError", "ReadOptions", "Reader", "find_reader", "list_formats", "open_dataset",
           "register_reader"]


def open_dataset(source: Path | str, *, format: str | None = None, split: str | None = None,
                 database: str | None = None, queries: str | None = None, image_root: Path | str | None = None,
                 frame_tolerance: int | None = None, spacing: float | None = None,
                 skip_bad: bool = False, image_topic: str | None = None, gps_topic: str | None = None,
                 odom_topic: str | None = None, every: int | None = None, min_interval: float | None = None,
                 min_distance: float | None = None) -> GeoDataset:
    """Load a dataset in any registered format (auto-detected unless ``format`` is given).

    ``split``: DVGB / .mat / CSV split; ``database``/``queries``: the two sub-folders (sequences, EXIF folders,
    DVGB renames; for .mat the sub-folders of ``image_root``); ``image_root``: where .mat / CSV paths start;
    ``frame_tolerance`` (frames) and ``spacing`` (metres per frame): sequences only; ``skip_bad``: log and count bad
    entries (``info.skipped``) instead of raising; ``image_topic``, ``gps_topic`` / ``odom_topic`` and the
    keyframes kept (``every`` N images, ``min_interval`` seconds, ``min_distance`` metres): ROS bags only.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from PIL import Image
        >>> folder = tempfile.TemporaryDirectory()
        >>> root = Path(folder.name)
        >>> for i in range(4):
        ...     Image.new("RGB", (64, 48), (60 * i, 0, 0)).save(root / f"{i}.png")
        >>> _ = (root / "manifest.csv").write_text("path,split,easting,northing,zone\\n"
        ...     "0.png,database,500000,4400000,17T\\n1.png,database,500100,4400000,17T\\n"
        ...     "2.png,query,500003,4400000,17T\\n3.png,query,500098,4400000,17T\\n")
        >>> dataset = open_dataset(root / "manifest.csv")  # the format is detected: a CSV manifest
        >>> dataset, dataset.info.format
        (< manifest - #q: 2; #db: 2 >, 'csv')
        >>> dataset.positives()  # database images within 25 m of each query
        [array([0]), array([1])]
        >>> folder.cleanup()
    """
    from netvlad.data.readers.common import DatasetError

    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: dataset not found; check the path")
    if path.is_dir() and not any(path.iterdir()):
        raise DatasetError(f"{path}: folder is empty; point at the dataset's root folder")
    options = ReadOptions(split=split, database=database, queries=queries,
                          image_root=Path(image_root).expanduser() if image_root is not None else None,
                          frame_tolerance=frame_tolerance, spacing=spacing, skip_bad=skip_bad,
                          image_topic=image_topic, gps_topic=gps_topic, odom_topic=odom_topic, every=every,
                          min_interval=min_interval, min_distance=min_distance)
    reader = find_reader(path, options, format)
    if options.bag_options and reader.name != "bag":
        names = ", ".join(options.bag_options)
        flags = ", ".join("--" + name.replace("_", "-") for name in options.bag_options)
        raise DatasetError(f"{path}: {names} apply to ROS bags only; this is a {reader.name} dataset", path=path,
                           hint=f"drop {flags}")
    dataset = reader.read(path, options)
    if (frame_tolerance is not None or spacing is not None) and not dataset.is_sequence:
        raise DatasetError(f"{path}: frame_tolerance/spacing apply to frame sequences only; this is a "
                           f"{reader.name} dataset with GPS positions", path=path,
                           hint="drop --frame-tolerance/--spacing")
    if len(dataset.database) == 0:
        raise DatasetError(f"{path}: no usable database images" + (" (all skipped)" if skip_bad else ""))
    skipped = dataset.info.skipped
    if skipped:
        logger.warning("%s: skipped %d bad entries (first: %s: %s)", dataset.name, len(skipped), *skipped[0])
    warn_if_queries_are_database_images(dataset)
    missing = dataset.queries_without_positives(EVAL_RADIUS_M) if len(dataset.queries) else []
    if len(missing):
        logger.warning("%s: %d of %d queries have no positive within %g m (or the frame tolerance); they count as "
                       "misses in Recall@N (first: %s)", dataset.name, len(missing), len(dataset.queries),
                       EVAL_RADIUS_M, dataset.queries.names[missing[0]])
    logger.info("%r (%s)", dataset, reader.name)
    return dataset


def warn_if_queries_are_database_images(dataset: GeoDataset) -> int:
    """Warn where queries are database images too (the same files): each finds itself at distance 0, so Recall@N
    measures nothing. Returns how many are."""
    shared = set(map(str, dataset.queries.paths())) & set(map(str, dataset.database.paths()))
    if shared:
        logger.warning("%s: %d of %d queries are database images too (the same files, e.g. %s): each finds itself, "
                       "so Recall@N says nothing about the model; give the queries another folder or split",
                       dataset.name, len(shared), len(dataset.queries), min(shared))
    return len(shared)
