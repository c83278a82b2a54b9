"""A training run that records its dataset: ``run_dir/dataset.json`` holds the dataset and its opening options,
so a resumed run needs only its folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from netvlad.errors import BadInputError
from netvlad.files import atomic_write

logger = logging.getLogger(__name__)

DATASET_RECORD = "dataset.json"  # the dataset arguments of a run, so a resume needs only the run folder
# DATASET, then the :func:`netvlad.data.open_dataset` keyword arguments a run records
DATASET_KEYS = ("dataset", "format", "split", "database", "queries", "image_root", "frame_tolerance", "spacing",
                "skip_bad", "image_topic", "gps_topic", "odom_topic", "every", "min_interval", "min_distance")


def record_dataset(run_dir: Path | str, source: Path | str, options: dict) -> Path:
    """Write ``run_dir/dataset.json``: ``source`` and the ``options`` it opens with (paths as absolute text)."""
    record = {k: _json_value(options.get(k)) for k in DATASET_KEYS[1:]}
    path = Path(run_dir) / DATASET_RECORD
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"dataset": str(Path(source).resolve())} | record,
                                                             indent=1) + "\n"))
    return path


def read_dataset_record(run_dir: Path | str) -> tuple[Path, dict]:
    """``(source, options)`` recorded in ``run_dir/dataset.json``."""
    path = Path(run_dir) / DATASET_RECORD
    if not path.is_file():
        raise BadInputError(f"{path}: no recorded dataset arguments (a run from an older version); "
                            "give DATASET and its options again", path=path)
    record = json.loads(path.read_text())
    return Path(record.pop("dataset")), record


def train_run(config, run_dir: Path | str, source: Path | str | None = None, options: dict | None = None,
              device="cpu", resume: bool = False, progress: bool = False) -> Path:
    """Open the dataset ``source`` with ``options`` (:func:`netvlad.data.open_dataset`'s keywords), record both in
    ``run_dir/dataset.json`` on a fresh run (a resume without ``source`` reads them back), record the numerics and
    train; returns the final checkpoint ``run_dir/model.safetensors``.

    Examples:
        >>> from netvlad.data import synthetic
        >>> from netvlad.train import TrainConfig
        >>> city = synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city")  # 20 + 10 views per split
        >>> config = TrainConfig(pretrained=False, resize="fixed", size=(64, 64), num_clusters=4, epochs=1,
        ...                      cluster_images=10, negative_samples=6, num_negatives=3, batch_tuples=2,
        ...                      tensorboard=False, val_places=0)  # random weights, 64 × 64: a seconds-long run
        >>> train_run(config, "run", city, {"split": "train"})  # what `netvlad train CITY --split train` runs
        PosixPath('run/model.safetensors')
        >>> source, options = read_dataset_record("run")  # what `netvlad train --resume run` reopens
        >>> source == Path(city).resolve(), options["split"]
        (True, 'train')
    """
    import torch

    from netvlad.data import open_dataset
    from netvlad.models.io import check_checkpoint
    from netvlad.numerics import record_numerics
    from netvlad.train.loop import train

    run_dir = Path(run_dir)
    if source is None:
        if not resume:
            raise BadInputError("give the DATASET to train on", hint="DATASET, or --resume RUN_DIR")
        source, options = read_dataset_record(run_dir)
    elif not resume:
        record_dataset(run_dir, source, options or {})
    logger.info("seed %d, %d torch threads (the same seed and thread count give the same weights)", config.seed,
                torch.get_num_threads())
    if config.init_model:
        check_checkpoint(config.init_model)  # before the dataset is read and the caches are built
    record_numerics(run_dir)
    return train(config, open_dataset(source, **(options or {})), run_dir, device=device, resume=resume,
                 progress=progress)


def _json_value(value):
    """A dataset argument as JSON can hold it: paths (``--image-root``) as absolute text."""
    return str(Path(value).resolve()) if isinstance(value, Path) else value
