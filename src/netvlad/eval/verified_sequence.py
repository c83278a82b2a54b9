"""Spatial re-ranking composed with sequence matching (``netvlad evaluate --sequence L --verify PRESET``).

Sequence first, then patches: each query frame's sequence ranking (SeqSLAM trajectories, Delta or SeqNet) is
re-ranked by patch matching over its top N, its own scores (lower is better) fused with the patch score where a
single-frame ranking fuses its global distances. The other order (patches re-rank each frame's single-frame
shortlist, then sequence matching runs over it) was measured lower on Gardens Point (docs/reranking.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from netvlad.data.dataset import GeoDataset
from netvlad.eval.sequence import SequenceResult
from netvlad.eval.verified import VerifiedEval, verify_given
from netvlad.match.verify.panoramas import panorama_groups
from netvlad.match.verify.patches import PatchExtractor
from netvlad.match.verify.presets import TOP

logger = logging.getLogger(__name__)


def sequence_shortlist(sequence: SequenceResult, top: int) -> tuple[np.ndarray, np.ndarray]:
    """The sequence ranking's first ``top`` columns and their scores ``(Q, top)``, lower is better (rank positions
    where the ranking kept no scores; a non-finite score of a real candidate becomes the row's worst)."""
    width = sequence.ranked.shape[1]
    if top > width:
        logger.warning("verify top %d is larger than the sequence ranking's %d candidates per query (--shortlist): "
                       "re-ranking its %d", top, width, width)
    top = max(1, min(top, width))
    ranked = sequence.ranked[:, :top]
    if sequence.scores is None:
        return ranked, np.broadcast_to(np.arange(top, dtype=np.float64), ranked.shape).copy()
    scores = np.asarray(sequence.scores[:, :top], dtype=np.float64).copy()
    finite = np.isfinite(scores)
    worst = np.where(finite, scores, -np.inf).max(1, keepdims=True)
    scores[~finite] = np.broadcast_to(np.where(np.isfinite(worst), worst, 0.0), scores.shape)[~finite]
    return ranked, scores


def verify_sequence(extractor: PatchExtractor, dataset: GeoDataset, positives: Sequence[np.ndarray],
                    sequence: SequenceResult, store_dir: Path | str, top: int = TOP,
                    ns: Sequence[int] = (1, 5, 10, 20), device: torch.device | str = "cpu") -> VerifiedEval:
    """Re-rank each query's sequence top-``top`` by matching ``extractor``'s patches
    (:func:`netvlad.match.verify.run.patch_extractor`'s; database patches kept in ``store_dir``).

    Examples:
        >>> from netvlad.eval.sequence import evaluate_sequences
        >>> from netvlad.match.sequence import SequenceConfig
        >>> from netvlad.match.verify import VerifyPreset, patch_extractor
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.models import ModelConfig, PlaceModel
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> toy = VerifyPreset("toy", "1 × 1 patches, 16-D", sizes=(1,), dim=16, scorer="rapid")
        >>> single, sequence = evaluate_sequences(model, city, SequenceConfig(length=3), ns=(1, 5), store_dir="store")
        >>> extractor = patch_extractor(model, toy, city.database.paths())
        >>> verified = verify_sequence(extractor, city, city.positives(), sequence, "store", top=5, ns=(1, 5))
        >>> verified.base == f"sequence {sequence.label}", verified.global_recall == sequence.recall
        (True, True)
    """
    ranked, scores = sequence_shortlist(sequence, top)
    return verify_given(extractor, dataset, positives, store_dir, ranked, scores, ns, device,
                        base=f"sequence {sequence.label}", groups=panorama_groups(dataset))
