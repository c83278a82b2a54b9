"""ROS bags as datasets: one bag (ROS 1 ``.bag``, ``.mcap``, or a ROS 2 folder) is a database run; a folder with
``database``/``queries`` naming two bags is a database and a query run. Images come from one image topic at their
header stamps, positions from a GNSS topic (UTM metres) or an odometry topic (metres in its frame) interpolated to
each stamp; see :mod:`netvlad.data.bags`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from netvlad.data.bags.bag import is_bag
from netvlad.data.bags.keyframes import KeyframeRule
from netvlad.data.bags.run import BagOptions, BagRun, read_run
from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.info import DatasetInfo
from netvlad.data.readers.common import DatasetError
from netvlad.data.readers.registry import ReadOptions, register_reader
from netvlad.data.sequences import SequenceOrder

logger = logging.getLogger(__name__)


def bag_paths(path: Path, options: ReadOptions) -> tuple[Path, Path | None]:
    """The database bag and the query bag (None for one bag)."""
    if is_bag(path):
        if options.database or options.queries:
            raise DatasetError(f"{path}: is one bag; database/queries name two bags (in a folder, or as paths)",
                               path=path, hint="--database RUN1.bag --queries RUN2.bag")
        return path, None
    return path / options.database, path / options.queries


def detect(path: Path, options: ReadOptions) -> bool:
    """A bag, or a folder whose ``database`` and ``queries`` are bags."""
    if is_bag(path):
        return True
    return bool(options.database and options.queries and path.is_dir()
                and is_bag(path / options.database) and is_bag(path / options.queries))


def image_list(run: BagRun, side: str) -> ImageList:
    """A run's keyframes as an :class:`ImageList` (the bag is its root; one sequence in stamp order)."""
    return ImageList(run.bag, run.names, run.points, run.zone, sequence=SequenceOrder.single(np.arange(len(run)),
                                                                                              side),
                     stamps=run.stamps)


@register_reader("bag", "ROS 1 .bag, ROS 2 bag folder or .mcap (--image-topic, --gps-topic/--odom-topic)", detect, 95)
def read(path: Path, options: ReadOptions) -> GeoDataset:
    """Load one bag (all database) or two (database and queries); see the module docstring."""
    rule = KeyframeRule(options.every or 1, options.min_interval, options.min_distance)
    bag_options = BagOptions(options.image_topic, options.gps_topic, options.odom_topic, rule)
    database_bag, query_bag = bag_paths(path, options)
    for bag in (database_bag, query_bag):
        if bag is not None and not bag.exists():
            raise FileNotFoundError(f"{bag}: bag not found; check the path")
    database = read_run(database_bag, bag_options)
    queries = read_run(query_bag, bag_options) if query_bag is not None else None
    if queries is not None and (database.zone is None) != (queries.zone is None):
        raise DatasetError(f"{path}: one run has GNSS positions and the other odometry; give both the same kind",
                           path=path, hint="--gps-topic or --odom-topic")
    if queries is not None and database.zone is not None and database.zone[0] != queries.zone[0]:
        raise DatasetError(f"{query_bag}: UTM zone {queries.zone[0]} differs from {database_bag}'s "
                           f"{database.zone[0]}; the two runs must cover one area", path=query_bag)
    if queries is not None and database.zone is None:
        logger.warning("%s, %s: positions are odometry, each in its own frame; Recall@N needs both runs in one "
                       "frame", database_bag, query_bag)
    empty = ImageList(database_bag, (), np.empty((0, 2)), database.zone)
    name = database_bag.stem if query_bag is None else f"{database_bag.stem}-{query_bag.stem}"
    return GeoDataset(name, image_list(database, "database"),
                      image_list(queries, "queries") if queries is not None else empty,
                      info=DatasetInfo(format="bag"))
