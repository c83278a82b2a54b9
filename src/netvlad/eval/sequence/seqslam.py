"""SeqSLAM-style matching over a shortlist (Milford & Wyeth, ICRA 2012): for each of the current query frame's M
candidate database frames, the best constant-velocity trajectory through the locally contrast-normalised
distances of the L query frames around it. Only the distances a trajectory (and its normalisation window) touches
are computed, so work is O(M · L · (V + W)) descriptor distances per query frame and memory is flat in N."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from netvlad.data.sequences import SequenceOrder
from netvlad.eval.search import read_rows
from netvlad.eval.sequence.config import DEFAULT, SequenceConfig
from netvlad.eval.sequence.layout import DatabaseLayout, query_windows

logger = logging.getLogger(__name__)

EPS = 1e-6  # floor of the window's standard deviation, so a flat window normalises to 0, not ∞


def _window_distances(query: np.ndarray, positions: np.ndarray, mask: np.ndarray, database: np.ndarray,
                      layout: DatabaseLayout) -> np.ndarray:
    """Euclidean distances of ``query`` (D,) to the database frames at layout ``positions`` (any shape) where
    ``mask``; NaN elsewhere. Each distinct frame is read and computed once."""
    out = np.full(positions.shape, np.nan, dtype=np.float64)
    if not mask.any():
        return out
    unique, inverse = np.unique(positions[mask], return_inverse=True)
    rows = read_rows(database, layout.order[unique])
    distances = np.sqrt(np.maximum(((rows - query[None, :].astype(np.float32)) ** 2).sum(axis=1), 0.0))
    out[mask] = distances[inverse.reshape(-1)]
    return out


def score_candidates(window: np.ndarray, offsets: np.ndarray, candidates: np.ndarray, database: np.ndarray,
                     layout: DatabaseLayout, config: SequenceConfig) -> tuple[np.ndarray, np.ndarray]:
    """Trajectory scores (M,) (mean normalised distance, lower is better) and trajectory lengths (M,) in query
    frames for database ``candidates`` (M,) as the match of the query frame at offset 0.

    ``window`` (K, D): the query descriptors of the window; ``offsets`` (K,): their frame numbers relative to the
    current frame. A trajectory at velocity v visits database frame ``position + round(v · offset)`` for each query
    frame; points outside the candidate's database sequence are dropped (never crossing a boundary), and each
    distance is normalised by the mean and standard deviation of that query frame's distances over the ±R database
    frames around the point (within the sequence). The best velocity wins.
    """
    candidates = np.asarray(candidates, np.int64).reshape(-1)
    velocities = np.asarray(config.velocities, np.float64)
    radius = np.arange(-config.contrast_radius, config.contrast_radius + 1)
    steps = np.rint(velocities[:, None] * np.asarray(offsets, np.float64)[None, :]).astype(np.int64)  # (V, K)
    base, lo, hi = (layout.position[candidates], layout.start[candidates], layout.stop[candidates])
    points = base[:, None, None] + steps[None]  # (M, V, K)
    valid = (points >= lo[:, None, None]) & (points < hi[:, None, None])
    total = np.zeros(valid.shape[:2])
    for k in range(len(offsets)):
        spots = points[:, :, k, None] + radius  # (M, V, W)
        inside = valid[:, :, k, None] & (spots >= lo[:, None, None]) & (spots < hi[:, None, None])
        values = _window_distances(np.asarray(window[k]), spots, inside, database, layout)
        count = np.maximum(inside.sum(axis=2), 1)
        mean = np.where(inside, values, 0.0).sum(axis=2) / count
        var = np.where(inside, (values - mean[..., None]) ** 2, 0.0).sum(axis=2) / count
        normalised = (values[..., config.contrast_radius] - mean) / (np.sqrt(var) + EPS)
        total += np.where(valid[:, :, k], normalised, 0.0)
    lengths = valid.sum(axis=2)
    scores = total / np.maximum(lengths, 1)
    best = scores.argmin(axis=1) if len(candidates) else np.zeros(0, np.int64)
    rows = np.arange(len(candidates))
    return scores[rows, best], lengths[rows, best]


def propagated(shortlists: list[np.ndarray], offsets: np.ndarray, layout: DatabaseLayout,
               config: SequenceConfig) -> np.ndarray:
    """Candidate end frames (≤ M + (K−1)·P,) for the current query frame: its own shortlist (first entry of
    ``shortlists``, at offset 0) and the top ``config.propagate`` of each other window frame's shortlist moved
    along the trajectory at the median velocity (``round(−v · offset)`` database frames, inside their sequence).
    Then a true match missing from the current frame's shortlist is still scored when its neighbours found it."""
    own = np.asarray(shortlists[0], np.int64)
    parts = [own[own >= 0]]
    if config.propagate:
        velocity = float(np.median(config.velocities))
        for ids, offset in zip(shortlists[1:], offsets[1:], strict=True):
            ids = np.asarray(ids, np.int64)[:config.propagate]
            ids = ids[ids >= 0]
            moved = layout.position[ids] - int(np.rint(velocity * offset))
            inside = (moved >= layout.start[ids]) & (moved < layout.stop[ids])
            parts.append(layout.order[moved[inside]])
    merged = np.concatenate(parts)
    _, first = np.unique(merged, return_index=True)
    return merged[np.sort(first)]  # own shortlist first, in its order (ties keep it)


@dataclass(frozen=True)
class SequenceRanking:
    """Per query: ``ranked`` (Q, M) database indices best first (-1 padding), ``scores`` (Q, M) trajectory scores
    (lower is better, inf padding), ``lengths`` (Q,) query frames in the window, ``shortened`` (Q,) bool window
    shorter than L, ``gaps`` (Q,) bool window holding a gap or repeated frame."""

    ranked: np.ndarray
    scores: np.ndarray
    lengths: np.ndarray
    shortened: np.ndarray
    gaps: np.ndarray

    def summary(self) -> dict:
        """Counts for the report: queries, shortened windows, windows with gaps."""
        return {"queries": len(self.ranked), "shortened_windows": int(self.shortened.sum()),
                "windows_with_gaps": int(self.gaps.sum())}


def rank_shortlist(candidates: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (M,) and their scores re-ordered best first (stable: ties keep the shortlist's order)."""
    order = np.argsort(scores, kind="stable")
    return candidates[order], scores[order]


def seqslam_rank(queries: np.ndarray, database: np.ndarray, query_order: SequenceOrder,
                 database_order: SequenceOrder | None, shortlist: np.ndarray,
                 config: SequenceConfig = DEFAULT) -> SequenceRanking:
    """Re-rank each query frame's ``shortlist`` (Q, M) database indices (-1 = none) by SeqSLAM-style trajectory
    score over its window of query frames (causal or centred, see :class:`SequenceConfig`).

    ``queries`` (Q, D) and ``database`` (N, D) descriptors (a memory-mapped store works: only touched rows are
    read); ``database_order`` None treats the database as one sequence in list order.
    """
    if len(query_order) != len(queries):
        raise ValueError(f"sequence order of {len(query_order)} queries for {len(queries)} query descriptors")
    layout = DatabaseLayout.from_order(database_order, len(database))
    shortlist = np.asarray(shortlist, np.int64).reshape(len(queries), -1)
    ranked = np.full(shortlist.shape, -1, np.int64)
    scores = np.full(shortlist.shape, np.inf)
    lengths = np.zeros(len(queries), np.int64)
    shortened, gaps = np.zeros(len(queries), bool), np.zeros(len(queries), bool)
    for window in query_windows(query_order, config.before, config.after):
        q = window.index
        here = int(np.flatnonzero(window.members == q)[0])
        others = [i for i in range(len(window.members)) if i != here]
        known = propagated([shortlist[q]] + [shortlist[window.members[i]] for i in others],
                           np.concatenate([[0], window.offsets[others]]), layout, config)
        rows = read_rows(queries, window.members)
        score, _ = score_candidates(rows, window.offsets, known, database, layout, config)
        best, best_scores = rank_shortlist(known, score)
        width = min(len(best), shortlist.shape[1])
        ranked[q, :width], scores[q, :width] = best[:width], best_scores[:width]
        lengths[q] = len(window.members)
        shortened[q], gaps[q] = window.shortened, window.gap
    return SequenceRanking(ranked, scores, lengths, shortened, gaps)
