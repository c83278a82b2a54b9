"""The demo's data: the generated city's splits, or a given dataset's splits (split in two if it has none)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netvlad.data import DatasetError, GeoDataset, open_dataset
from netvlad.data.synthetic import CityConfig, generate_city
from netvlad.pipeline.demo_config import DemoConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoData:
    """Training, validation (optional) and test sets, and a sentence saying where they come from."""

    train: GeoDataset
    val: GeoDataset | None
    test: GeoDataset
    source: str


def prepare_data(config: DemoConfig, out_dir: Path, progress: bool = False, overwrite: bool = False) -> DemoData:
    """Generate the city into ``out_dir/city`` (reused when already there unless ``overwrite``), or open
    ``config.data``."""
    if config.data is not None:
        return open_given(config)
    city = CityConfig.preset(config.city_size, seed=config.city_seed)
    root = generate_city(city, out_dir / "city", progress, overwrite=overwrite, workers=config.city_workers)
    train, val, test = (open_dataset(root, split=s) for s in ("train", "val", "test"))
    source = (f"the synthetic city ({config.city_size} size, seed {config.city_seed}) in {root}: trained on its "
              "train split, validated on val, tested on test (disjoint parts of the city)")
    return DemoData(train, val, test, source)


def _open(config: DemoConfig, split: str | None) -> GeoDataset:
    return open_dataset(config.data, split=split, database=config.database, queries=config.queries,
                        frame_tolerance=config.frame_tolerance)


def open_given(config: DemoConfig) -> DemoData:
    """The dataset's own train / val / test splits; a dataset without them is split by place (or frame)."""
    try:
        train, test = _open(config, "train"), _open(config, "test")
    except DatasetError as error:
        logger.info("%s has no train and test splits (%s); splitting it by place", config.data, error)
        train = test = None
    if train is not None and train.database.names != test.database.names:
        try:
            val = _open(config, "val")
        except DatasetError:
            val = None
        return DemoData(train, val, test, f"{config.data}: trained on its train split, "
                        f"{'validated on val, ' if val else ''}tested on its test split")
    whole = _open(config, None)
    train, test = split_by_place(whole, config.test_share, config.radius)
    order = "frames" if whole.is_sequence else "places along its main axis"
    source = (f"{config.data} (one split): trained on the first {1 - config.test_share:.0%} of its {order}, "
              f"tested on the last {config.test_share:.0%}")
    return DemoData(train, None, test, source)


def split_by_place(dataset: GeoDataset, test_share: float, gap: float) -> tuple[GeoDataset, GeoDataset]:
    """(train, test): the last ``test_share`` of frames, or of positions along the main axis (with a ``gap``
    metres wide no-man's-land, so no test place is a training place)."""
    if dataset.is_sequence:
        frames = np.union1d(dataset.database.frames, dataset.queries.frames)
        return dataset.split_by_frames(max(1, round(test_share * len(frames))))
    db, q = dataset.database.utm, dataset.queries.utm
    centre = db.mean(0)
    axis = np.linalg.svd(db - centre, full_matrices=False)[2][0]  # main direction of the database positions
    axis = axis if (db[-1] - db[0]) @ axis >= 0 else -axis  # pointing from the first database image to the last
    along_db, along_q = (db - centre) @ axis, (q - centre) @ axis
    cut = np.quantile(along_db, 1 - test_share)
    train = dataset.subset(np.flatnonzero(along_q < cut - gap / 2), np.flatnonzero(along_db < cut - gap / 2),
                           name=f"{dataset.name}-train")
    test = dataset.subset(np.flatnonzero(along_q > cut + gap / 2), np.flatnonzero(along_db > cut + gap / 2),
                          name=f"{dataset.name}-test")
    if min(len(train.queries), len(test.queries), len(train.database), len(test.database)) == 0:
        raise ValueError(f"{dataset.name}: too small to split into training and test places; give a dataset "
                         "with train and test splits")
    return train, test
