"""Recall@N split into the places a model was trained on and the held-out ones, from its checkpoint's provenance."""

from __future__ import annotations

import logging

import numpy as np

from netvlad.data.dataset import GeoDataset
from netvlad.data.provenance import Provenance, seen_queries
from netvlad.eval.recall import EvalResult, recall_by_condition

logger = logging.getLogger(__name__)

HELD_OUT, SEEN = "held out", "seen in training"


def recall_held_out(result: EvalResult, dataset: GeoDataset, provenance: Provenance | None) -> dict[str, dict] | None:
    """Recall@N of ``result`` over the held-out queries and over those whose place the model was trained on
    (``{"held out": {"num_queries", "recall"}, "seen in training": {...}}``, each part present where it has
    queries), or None where the provenance does not relate the model to ``dataset``.

    Where both parts have queries, warns (once per call) that the headline Recall@N mixes them.
    """
    if provenance is None:
        return None
    seen = seen_queries(provenance, dataset)
    if seen is None:
        return None
    ns = tuple(result.recall)
    labels = np.where(seen, SEEN, HELD_OUT)
    parts = recall_by_condition(result.ranked, result.positives, labels.tolist(), ns)
    parts = {label: parts[label] for label in (HELD_OUT, SEEN) if label in parts}
    if len(parts) == 2:
        hint = f"; --places {provenance.val['places']} keeps the validation places" if (
            provenance.val and provenance.val.get("places")) else ""
        logger.warning("the model was trained on %d of the %d evaluated queries' places (%s): the headline "
                       "Recall@N mixes seen and held-out places, read the held-out row%s", int(seen.sum()),
                       len(seen), provenance.describe(), hint)
    elif SEEN in parts:
        logger.warning("the model was trained on every evaluated place (%s): this Recall@N measures training "
                       "data, not held-out performance", provenance.describe())
    return parts
