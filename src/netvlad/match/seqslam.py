"""SeqSLAM-style matching over a shortlist (Milford & Wyeth, ICRA 2012): for each of the current query frame's M
candidate database frames, the best constant-velocity trajectory through the locally contrast-normalised
distances of the L query frames around it. Only the distances a trajectory (and its normalisation window) touches
are computed (each candidate's block of neighbouring database rows against the window's L query frames, batched
over queries: :mod:`netvlad.match.seqslam_scoring`), so work is O(M · L · (W + V·L)) descriptor distances per query
frame and memory is flat in N."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from netvlad.data.sequences import SequenceOrder
from netvlad.match.seqslam_scoring import MAX_MEMORY, batch_size, score_windows, squared_norms
from netvlad.match.sequence import DEFAULT, SequenceConfig
from netvlad.match.sequence_layout import DatabaseLayout, WindowMatrix, window_matrix
from netvlad.search.exact import read_rows

logger = logging.getLogger(__name__)


def score_candidates(window: np.ndarray, offsets: np.ndarray, candidates: np.ndarray, database: np.ndarray,
                     layout: DatabaseLayout, config: SequenceConfig, norms: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Trajectory scores (M,) (lower is better) and points inside the database sequence (M,) of database
    ``candidates`` (M,) as the match of the query frame at offset 0 of ``window`` (K, D) query descriptors at frame
    ``offsets`` (K,); see :func:`~netvlad.match.seqslam_scoring.score_windows` (``norms``: its database ‖x‖²)."""
    window = np.asarray(window, np.float32)
    offsets = np.asarray(offsets, np.int64).reshape(1, -1)
    candidates = np.asarray(candidates, np.int64).reshape(1, -1)
    scores, lengths = score_windows(window, np.arange(len(window))[None], offsets, np.ones(offsets.shape, bool),
                                    candidates, database, layout, config, norms)
    return scores[0], lengths[0]


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


def candidate_matrix(shortlist: np.ndarray, windows: WindowMatrix, layout: DatabaseLayout,
                     config: SequenceConfig) -> np.ndarray:
    """Candidate end frames (Q, C) (−1 padded) of every query: :func:`propagated` for all rows at once — its own
    shortlist row first, then the top ``config.propagate`` of each other window frame's row moved along the
    trajectory at the median velocity (inside their sequence), each frame once, in that order."""
    merged = shortlist[windows.members[:, windows.here]]
    others = [k for k in range(windows.members.shape[1]) if k != windows.here]
    if config.propagate and others:
        velocity = float(np.median(config.velocities))
        members = windows.members[:, others]
        ids = shortlist[np.maximum(members, 0)][:, :, :config.propagate]  # (Q, K−1, P)
        moved = layout.position[np.maximum(ids, 0)] - np.rint(velocity * windows.offsets[:, others]).astype(
            np.int64)[:, :, None]
        safe = np.maximum(ids, 0)
        ok = ((members >= 0)[:, :, None] & (ids >= 0) & (moved >= layout.start[safe]) & (moved < layout.stop[safe]))
        carried = np.where(ok, layout.order[np.clip(moved, 0, max(len(layout) - 1, 0))], -1)
        merged = np.concatenate([merged, carried.reshape(len(merged), -1)], axis=1)
    order = np.argsort(merged, axis=1, kind="stable")
    ranked = np.take_along_axis(merged, order, axis=1)
    repeat = np.zeros(merged.shape, bool)
    np.put_along_axis(repeat, order, np.concatenate([np.zeros((len(merged), 1), bool),
                                                     ranked[:, 1:] == ranked[:, :-1]], axis=1), axis=1)
    drop = repeat | (merged < 0)
    keep = np.argsort(drop, axis=1, kind="stable")  # the first of each frame, in candidate order, then the rest
    width = max(int((~drop).sum(axis=1).max(initial=0)), 1)
    return np.where(np.take_along_axis(drop, keep, axis=1), -1, np.take_along_axis(merged, keep, axis=1))[:, :width]


def seqslam_rank(queries: np.ndarray, database: np.ndarray, query_order: SequenceOrder,
                 database_order: SequenceOrder | None, shortlist: np.ndarray,
                 config: SequenceConfig = DEFAULT, max_memory: float = MAX_MEMORY) -> SequenceRanking:
    """Re-rank each query frame's ``shortlist`` (Q, M) database indices (-1 = none) by SeqSLAM-style trajectory
    score over its window of query frames (causal or centred, see :class:`SequenceConfig`).

    ``queries`` (Q, D) and ``database`` (N, D) descriptors (a memory-mapped store works: only touched rows are
    read); ``database_order`` None treats the database as one sequence in list order. Query windows are scored in
    batches whose gathered database rows fit ``max_memory`` bytes, so memory is flat in N.
    """
    if len(query_order) != len(queries):
        raise ValueError(f"sequence order of {len(query_order)} queries for {len(queries)} query descriptors")
    layout = DatabaseLayout.from_order(database_order, len(database))
    shortlist = np.asarray(shortlist, np.int64).reshape(len(queries), -1)
    width = shortlist.shape[1]
    ranked = np.full(shortlist.shape, -1, np.int64)
    scores = np.full(shortlist.shape, np.inf)
    windows = window_matrix(query_order, config.before, config.after)
    length = windows.members.shape[1]
    reach = int(np.ceil(max(abs(v) for v in config.velocities) * max(config.before, config.after)))
    step = batch_size(width + (length - 1) * config.propagate, reach + 2 * config.contrast_radius + 1, length,
                      len(config.velocities) * length * (2 * config.contrast_radius + 1), max_memory)
    norms = squared_norms(database)
    for a in range(0, len(queries), step):
        part = _rows_of(windows, slice(a, a + step))
        candidates = candidate_matrix(shortlist, part, layout, config)
        members, slots = np.unique(np.maximum(part.members, 0), return_inverse=True)
        score, _ = score_windows(read_rows(queries, members), slots.reshape(part.members.shape), part.offsets,
                                 part.valid, candidates, database, layout, config, norms)
        order = np.argsort(score, axis=1, kind="stable")[:, :width]  # ties keep the candidates' order
        best, best_scores = np.take_along_axis(candidates, order, 1), np.take_along_axis(score, order, 1)
        ranked[a:a + step, :best.shape[1]] = np.where(np.isfinite(best_scores), best, -1)
        scores[a:a + step, :best.shape[1]] = best_scores
    return SequenceRanking(ranked, scores, windows.valid.sum(axis=1), windows.shortened, windows.gaps)


def _rows_of(windows: WindowMatrix, rows: slice) -> WindowMatrix:
    """The windows of queries ``rows`` (a slice of the matrix; the shortlist stays indexed by image)."""
    return dataclasses.replace(windows, members=windows.members[rows], offsets=windows.offsets[rows],
                               valid=windows.valid[rows], shortened=windows.shortened[rows], gaps=windows.gaps[rows])
