"""Validation during training: Recall@N of a model on a held-out GeoDataset."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from netvlad.data.dataset import GeoDataset
from netvlad.eval.recall import recall_at_n
from netvlad.models import PlaceModel
from netvlad.train.cache import extract_sharded
from netvlad.train.distributed import DistInfo
from netvlad.train.mining import squared_distance_matrix


def rank_database(queries: np.ndarray, database: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` database indices ``(Q, k)`` per query by squared Euclidean distance, nearest first."""
    distances = squared_distance_matrix(queries, database)
    k = min(k, database.shape[0])
    return np.argsort(distances, axis=1, kind="stable")[:, :k]


def validate(model: PlaceModel, dataset: GeoDataset, info: DistInfo | None = None, radius: float = 25.0,
             ns: Sequence[int] = (1, 5, 10), **kwargs) -> dict[int, float]:
    """Recall@N (percent) of ``model`` on ``dataset``; extraction sharded over ranks, every rank gets the result."""
    info = info or DistInfo()
    db = extract_sharded(model, dataset.database.paths(), info, desc="val database", **kwargs)
    q = extract_sharded(model, dataset.queries.paths(), info, desc="val queries", **kwargs)
    return recall_at_n(rank_database(q, db, max(ns)), dataset.positives(radius), ns)
