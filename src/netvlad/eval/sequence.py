"""Recall@N of sequence matching beside the single-frame Recall@N of the same descriptors: the single-frame search
gives each query frame its shortlist, which SeqSLAM-style matching re-ranks (``seqslam``); Delta descriptors are
searched like any global descriptor (``delta``); SeqNet's sequence descriptors give the shortlist that SeqSLAM
re-ranks (``seqnet``, HVPR)."""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netvlad.constants import EVAL_RADIUS_M
from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.sequences import SequenceOrder
from netvlad.errors import BadInputError
from netvlad.eval.recall import DEFAULT_NS, EvalResult, describe, evaluate_descriptors, recall_at_n
from netvlad.files import atomic_write
from netvlad.match.delta import shifted_windows
from netvlad.match.seqslam import query_windows
from netvlad.match.sequence import DEFAULT_METHOD, METHODS, Encoder, SequenceConfig, SequenceInputs
from netvlad.search.index import EXACT, IndexConfig

logger = logging.getLogger(__name__)


@dataclass
class SequenceResult:
    """Sequence ranking of Q queries: ``ranked`` (Q, M) database indices best first, ``correct`` (Q, M),
    ``recall`` {N: percent}, ``lengths`` (Q,) query frames in each window, ``shortened`` / ``gaps`` (Q,) bool,
    ``scores`` (Q, M) the ranking's scores, lower is better (trajectory scores or sequence-descriptor distances)."""

    method: str
    config: SequenceConfig
    recall: dict[int, float]
    ranked: np.ndarray
    correct: np.ndarray
    lengths: np.ndarray
    shortened: np.ndarray
    gaps: np.ndarray
    scores: np.ndarray | None = None
    shifted: int = 0  # Delta windows shifted inside their sequence to keep L frames (seqNet's rule)

    @property
    def label(self) -> str:
        """``seqslam L=10 causal``."""
        return f"{self.method} L={self.config.length} {self.config.mode}"

    def summary(self) -> dict:
        """The JSON ``sequence_recall`` entry."""
        return {"recall": {str(n): round(r, 4) for n, r in self.recall.items()}, "method": self.method,
                "sequence_length": self.config.length, "mode": self.config.mode, "shortlist": self.config.shortlist,
                "velocities": list(self.config.velocities), "contrast_radius": self.config.contrast_radius,
                "num_queries": len(self.ranked), "shortened_windows": int(self.shortened.sum()),
                "windows_with_gaps": int(self.gaps.sum()), "shifted_windows": self.shifted}

    def table(self, single: EvalResult) -> str:
        """Single-frame and sequence Recall@N side by side, with the shortened-window count."""
        ns = list(self.recall)
        width = max(len(self.label), 12)
        lines = [f"{'':<{width}} " + " ".join(f"{'R@' + str(n):>7}" for n in ns),
                 f"{'single frame':<{width}} " + " ".join(f"{single.recall[n]:7.2f}" for n in ns),
                 f"{self.label:<{width}} " + " ".join(f"{self.recall[n]:7.2f}" for n in ns)]
        shifted = f"; {self.shifted} windows shifted inside their sequence to keep L frames" if self.shifted else ""
        return "\n".join(lines) + (f"\n{int(self.shortened.sum())} of {len(self.ranked)} queries had fewer than "
                                   f"{self.config.length} frames; {int(self.gaps.sum())} windows held a gap{shifted}")


def require_sequences(dataset: GeoDataset, config: SequenceConfig) -> None:
    """Refuse, in one line, a dataset without sequence order on a side, or L longer than every query sequence."""
    for side, images in (("queries", dataset.queries), ("database", dataset.database)):
        if images.sequence is None:
            raise BadInputError(f"{dataset.name}: the {side} carry no sequence order; give sequence matching "
                                "frame-numbered file names (one folder per sequence) or CSV sequence and frame "
                                "columns", path=images.root)
    longest = max((len(m) for m in dataset.queries.sequence.members()), default=0)
    if config.length > longest:
        raise BadInputError(f"{dataset.name}: sequence length {config.length} is longer than every query sequence "
                            f"(the longest has {longest} frames); choose L ≤ {longest}",
                            hint=f"--sequence {max(2, min(10, longest))}")


def window_flags(order: SequenceOrder, config: SequenceConfig, method: str = "seqslam"
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query: window length, shortened, gap (SeqSLAM's windows, which SeqNet shares; a method whose windows are
    shifted inside the sequence, Delta's, is shortened only by a sequence shorter than L)."""
    windows = query_windows(order, config.before, config.after)
    lengths = np.array([len(w.members) for w in windows], np.int64)
    shortened = np.array([w.shortened for w in windows], bool)
    if METHODS.get(method).shifted:
        for members in order.members():
            lengths[members] = min(len(members), config.length)
        shortened = lengths < config.length
    return lengths, shortened, np.array([w.gap for w in windows], bool)


def _result(method: str, config: SequenceConfig, ranked: np.ndarray, positives: Sequence[np.ndarray], ns,
            order: SequenceOrder, scores: np.ndarray | None = None) -> SequenceResult:
    correct = np.zeros(ranked.shape, bool)
    for q, pos in enumerate(positives):
        correct[q] = np.isin(ranked[q], pos) & (ranked[q] >= 0)
    return SequenceResult(method, config, recall_at_n(ranked, positives, ns), ranked, correct,
                          *window_flags(order, config, method), scores=scores,
                          shifted=shifted_windows(order, config) if METHODS.get(method).shifted else 0)


def sequence_ranking(method: str, db: np.ndarray, queries: np.ndarray, dataset: GeoDataset, single: EvalResult,
                     config: SequenceConfig, ns: Sequence[int], *, index_config: IndexConfig = EXACT,
                     encoder: Encoder | None = None, max_memory: float | None = None) -> SequenceResult:
    """The sequence ranking of ``method`` over single-frame descriptors ``db`` (N, D) and ``queries`` (Q, D), whose
    single-frame result ``single`` holds each query's shortlist (its first ``config.shortlist`` columns)."""
    rank = METHODS.get(method).rank
    require_sequences(dataset, config)
    q_order, db_order = dataset.queries.sequence, dataset.database.sequence
    positives = single.positives

    def search(seq_db: np.ndarray, seq_q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        found = evaluate_descriptors(seq_db, seq_q, positives, ns, index_config, k=k, max_memory=max_memory)
        return found.ranked, found.distances

    ranked, scores = rank(SequenceInputs(queries, db, q_order, db_order, single.ranked, config, max(ns), search,
                                         encoder, max_memory, dataset.name))
    return _result(method, config, ranked, positives, ns, q_order, scores)


def add_sequence_columns(csv_path: Path | str, result: SequenceResult, database: ImageList, top: int = 5) -> Path:
    """Append the sequence ranking to the per-query CSV at ``csv_path`` (one row per query, in order): top-1,
    correct@1 and correct@``top`` of the sequence ranking, window length, shortened and gap flags."""
    path = Path(csv_path)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if len(rows) != len(result.ranked) + 1:
        raise ValueError(f"{path}: {len(rows) - 1} query rows but a sequence ranking of {len(result.ranked)}")
    top = min(top, result.ranked.shape[1])
    rows[0] += ["seq_top1", "seq_correct_at_1", f"seq_correct_at_{top}", "seq_window", "seq_shortened", "seq_gap"]
    for q, row in enumerate(rows[1:]):
        best = result.ranked[q, 0]
        row += [database.names[best] if best >= 0 else "", int(result.correct[q, :1].any()),
                int(result.correct[q, :top].any()), int(result.lengths[q]), int(result.shortened[q]),
                int(result.gaps[q])]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows)

    return atomic_write(path, write)


def evaluate_sequences(model, dataset: GeoDataset, config: SequenceConfig, method: str = DEFAULT_METHOD, *,
                       encoder: Encoder | None = None, radius: float = EVAL_RADIUS_M, ns: Sequence[int] = DEFAULT_NS,
                       store_dir: Path | str | None = None, index_config: IndexConfig = EXACT,
                       max_memory: float | None = None, **extract) -> tuple[EvalResult, SequenceResult]:
    """Single-frame Recall@N of ``model`` on ``dataset`` and the sequence Recall@N of ``method`` over the same
    descriptors (extracted once; with ``store_dir`` kept in ``store_dir/{database,queries}`` and reused).
    ``extract``: ``describe``'s options (batch_size, workers, device, dtype, skip_bad, progress)."""
    require_sequences(dataset, config)
    store = Path(store_dir) if store_dir is not None else None
    db, db_valid, db_bad = describe(model, dataset.database, store and store / "database", desc="database", **extract)
    q, q_valid, q_bad = describe(model, dataset.queries, store and store / "queries", desc="queries", **extract)
    config = _wide_enough(config, ns)
    single = evaluate_descriptors(db, q, dataset.positives(radius), ns, index_config, db_valid, q_valid,
                                  k=config.shortlist, max_memory=max_memory)
    single.skipped = db_bad + q_bad
    result = sequence_ranking(method, db, q, dataset, single, config, ns, index_config=index_config,
                              encoder=encoder, max_memory=max_memory)
    logger.info("%r single-frame Recall@N %s; %s %s", dataset, {n: round(r, 2) for n, r in single.recall.items()},
                result.label, {n: round(r, 2) for n, r in result.recall.items()})
    return single, result


def _wide_enough(config: SequenceConfig, ns: Sequence[int]) -> SequenceConfig:
    """``config`` with a shortlist of at least max(ns) frames (Recall@N needs N candidates)."""
    return config if config.shortlist >= max(ns) else dataclasses.replace(config, shortlist=max(ns))
