"""Validation during training: Recall@N of a model on a held-out GeoDataset."""

from __future__ import annotations

from collections.abc import Sequence

from netvlad.constants import EVAL_RADIUS_M
from netvlad.data.dataset import GeoDataset
from netvlad.eval.recall import evaluate_descriptors
from netvlad.models import PlaceModel
from netvlad.train.cache import ExtractOptions, extract_sharded
from netvlad.train.distributed import DistInfo


def validate(model: PlaceModel, dataset: GeoDataset, info: DistInfo | None = None,
             options: ExtractOptions | None = None, radius: float = EVAL_RADIUS_M,
             ns: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Recall@N (percent, positives within ``radius`` metres) of ``model`` on ``dataset``; extraction sharded over
    ranks, every rank gets the result."""
    info, options = info or DistInfo(), options or ExtractOptions()
    db = extract_sharded(model, dataset.database.paths(), info, options, desc="val database")
    q = extract_sharded(model, dataset.queries.paths(), info, options, desc="val queries")
    return evaluate_descriptors(db, q, dataset.positives(radius), ns).recall
