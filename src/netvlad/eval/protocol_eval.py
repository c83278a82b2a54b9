"""Running a named :class:`~netvlad.eval.protocols.Protocol`: open the dataset its way, check it, evaluate, report.

What the JSON report needs beyond Recall@N comes from here: the protocol, the counts (with the published ones
where they differ), the image sizes actually fed to the network, and per-group (MSLS city) results.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from netvlad.data import open_dataset
from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.images import image_size
from netvlad.data.readers import ReadOptions, find_reader
from netvlad.data.readers.msls import city_of
from netvlad.errors import BadInputError
from netvlad.eval.grouped import evaluate_groups
from netvlad.eval.protocols import Protocol, check_dataset, count_differences
from netvlad.eval.recall import EvalResult, describe, evaluate
from netvlad.extract.engine import LIBRARY_ENGINE, Engine
from netvlad.models import PlaceModel, Preprocessing

logger = logging.getLogger(__name__)

REPORTED_INFO = ("query_set", "cities", "subtask", "split")  # which copy of the data was evaluated
SIZE_SAMPLE = 2000  # images per side whose header is read to report the fed sizes (all when fewer)


@dataclass
class ProtocolRun:
    """A protocol's evaluation: the dataset as evaluated, the combined result and per-group results."""

    protocol: Protocol
    dataset: GeoDataset
    result: EvalResult
    per_group: dict[str, EvalResult] = field(default_factory=dict)

    def report(self, image_sizes: dict | None = None) -> dict:
        """JSON-ready entries: protocol, counts (and differences from the published ones), per-group recall."""
        counts = {"queries": len(self.dataset.queries), "database": len(self.dataset.database),
                  "published": {"queries": self.protocol.num_queries, "database": self.protocol.num_database},
                  "differences": count_differences(self.protocol, len(self.dataset.queries),
                                                   len(self.dataset.database))}
        out = {"protocol": self.protocol.to_json(), "counts": counts}
        out |= {key: getattr(self.dataset.info, key) for key in REPORTED_INFO
                if getattr(self.dataset.info, key) is not None}
        if self.per_group:
            out["recall_by_" + (self.protocol.group_by or "group")] = {
                group: {"num_queries": r.num_queries, "num_database": r.num_database,
                        "recall": {str(n): round(v, 4) for n, v in r.recall.items()}}
                for group, r in self.per_group.items()}
        if image_sizes is not None:
            out["image_sizes"] = image_sizes
        return out


def open_for_protocol(source: Path | str, protocol: Protocol, *, image_root: Path | str | None = None,
                      skip_bad: bool = False) -> GeoDataset:
    """Open ``source`` with the protocol's split, folders and tolerance, refusing another kind of dataset."""
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: dataset not found; check the path")
    probe = ReadOptions(database=protocol.database, queries=protocol.queries)
    try:
        fmt = find_reader(path, probe).name
    except ValueError:
        fmt = find_reader(path, ReadOptions()).name
    if fmt not in protocol.formats:
        raise BadInputError(f"{path}: protocol {protocol.name} needs a {' or '.join(protocol.formats)} dataset, "
                            f"this is {fmt}", path=path)
    dataset = open_dataset(path, format=fmt, split=protocol.split if fmt != "mat" else None,
                           database=protocol.database if fmt != "mat" else None, queries=protocol.queries,
                           image_root=image_root, frame_tolerance=protocol.frame_tolerance, skip_bad=skip_bad)
    return prepare(dataset, protocol)


def frames_from_names(images: ImageList) -> np.ndarray | None:
    """The frame number ending each file name (``images-00210.png`` -> 210), or None unless every name has one."""
    numbers = [re.search(r"(\d+)$", Path(name).stem) for name in images.names]
    return np.array([int(m.group(1)) for m in numbers], dtype=np.int64) if all(numbers) else None


def prepare(dataset: GeoDataset, protocol: Protocol) -> GeoDataset:
    """Check ``dataset`` against ``protocol``; frames counted on the names' numbers; unmatched queries dropped."""
    check_dataset(protocol, dataset)
    if protocol.frame_tolerance is not None:
        db, q = frames_from_names(dataset.database), frames_from_names(dataset.queries)
        if db is not None and q is not None:  # the published ±k frames are in the names' frame numbers
            dataset = dataclasses.replace(dataset, database=dataclasses.replace(dataset.database, frames=db),
                                          queries=dataclasses.replace(dataset.queries, frames=q),
                                          frame_tolerance=protocol.frame_tolerance)
    if protocol.drop_unmatched:
        dataset = dataset.with_positive_queries(protocol.radius)
    for side, numbers in count_differences(protocol, len(dataset.queries), len(dataset.database)).items():
        logger.warning("%s: %d %s images, the published %s protocol has %d", dataset.name, numbers["found"],
                       "query" if side == "queries" else side,
                       protocol.name, numbers["published"])
    return dataset


def with_input_size(model: PlaceModel, protocol: Protocol) -> PlaceModel:
    """``model`` with the protocol's input-size policy (the rest of its preprocessing unchanged)."""
    pre = model.config.preprocessing
    pre = dataclasses.replace(pre, resize=protocol.resize, size=tuple(protocol.size))
    model.config = dataclasses.replace(model.config, preprocessing=pre)
    return model


def fed_size(height: int, width: int, resize: str, size: tuple[int, ...]) -> tuple[int, int]:
    """(height, width) pixels an image of ``height``×``width`` is fed at under a resize policy (as the loader)."""
    if resize == "fixed":
        return int(size[0]), int(size[1])
    if resize == "longest" and size[0] < max(height, width):
        scale = size[0] / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))
    return height, width


def image_sizes(dataset: GeoDataset, preprocessing: Preprocessing, limit: int = SIZE_SAMPLE, seed: int = 0) -> dict:
    """``{"database": {"WxH": count}, "queries": {...}}`` of the sizes fed to the network (headers only; a seeded
    sample of ``limit`` images per side, noted in ``sampled_from``, when a side is larger)."""
    rng = np.random.default_rng(seed)
    out: dict = {"resize": preprocessing.resize, "size": list(preprocessing.size)}
    for side, images in (("database", dataset.database), ("queries", dataset.queries)):
        idx = np.arange(len(images)) if len(images) <= limit else np.sort(rng.choice(len(images), limit, False))
        sizes: Counter = Counter()
        for i in idx:
            try:
                h, w = fed_size(*image_size(images.root / images.names[i]), preprocessing.resize, preprocessing.size)
            except (OSError, ValueError):
                continue  # undecodable: reported as skipped by the extraction
            sizes[f"{w}x{h}"] += 1
        out[side] = dict(sizes.most_common())
        if len(idx) < len(images):
            out[f"{side}_sampled_from"] = len(images)
    return out


def evaluate_protocol(model: PlaceModel, dataset: GeoDataset, protocol: Protocol, *, ns=(1, 5, 10, 20),
                      batch_size: int = 8, workers: int = 0, device: torch.device | str = "cpu",
                      progress: bool = False, store_dir: Path | str | None = None, skip_bad: bool = False,
                      dtype: str = "float32", index_config=None, max_memory: float | None = None,
                      engine: Engine = LIBRARY_ENGINE) -> ProtocolRun:
    """Recall@N of ``model`` on a dataset prepared by :func:`open_for_protocol` (or :func:`prepare`)."""
    common = dict(batch_size=batch_size, workers=workers, device=device, progress=progress, skip_bad=skip_bad,
                  dtype=dtype, engine=engine)
    index = ({} if index_config is None else {"index_config": index_config}) | {"max_memory": max_memory}
    if not protocol.group_by:
        result = evaluate(model, dataset, radius=protocol.radius, ns=ns, store_dir=store_dir, **common, **index)
        return ProtocolRun(protocol, dataset, result)
    store = Path(store_dir) if store_dir is not None else None
    db, db_valid, db_bad = describe(model, dataset.database, store and store / "database", desc="database", **common)
    q, q_valid, q_bad = describe(model, dataset.queries, store and store / "queries", desc="queries", **common)
    combined, per_group = evaluate_groups(db, q, dataset, city_of, protocol.radius, ns, db_valid=db_valid,
                                          query_valid=q_valid, **index)
    combined.skipped = db_bad + q_bad
    logger.info("%r Recall@N: %s", dataset, {n: round(r, 2) for n, r in combined.recall.items()})
    return ProtocolRun(protocol, dataset, combined, per_group)
