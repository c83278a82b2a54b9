"""Validation during training: Recall@N of a model on a held-out GeoDataset."""

from __future__ import annotations

from collections.abc import Sequence

from netvlad.data.dataset import GeoDataset
from netvlad.eval.retrieval import evaluate_descriptors
from netvlad.models import PlaceModel
from netvlad.train.cache import extract_sharded
from netvlad.train.distributed import DistInfo


def validate(model: PlaceModel, dataset: GeoDataset, info: DistInfo | None = None, radius: float = 25.0,
             ns: Sequence[int] = (1, 5, 10), **kwargs) -> dict[int, float]:
    """Recall@N (percent) of ``model`` on ``dataset``; extraction sharded over ranks, every rank gets the result."""
    info = info or DistInfo()
    db = extract_sharded(model, dataset.database.paths(), info, desc="val database", **kwargs)
    q = extract_sharded(model, dataset.queries.paths(), info, desc="val queries", **kwargs)
    return evaluate_descriptors(db, q, dataset.positives(radius), ns).recall
