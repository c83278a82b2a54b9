"""Causal SeqSLAM-style matching online: fed one query frame at a time (a robot's camera), it scores the frame's
shortlist with the trajectories through the L−1 frames before it. Work per frame is O(M · L · (V + W)) descriptor
distances and its memory the last L query descriptors, independent of the map size."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from netvlad.data.sequences import SequenceOrder
from netvlad.match.seqslam import propagated, rank_shortlist, score_candidates
from netvlad.match.seqslam_scoring import squared_norms
from netvlad.match.sequence import DEFAULT, SequenceConfig
from netvlad.match.sequence_layout import DatabaseLayout


@dataclass(frozen=True)
class SequenceMatch:
    """One query frame's result: ``ids`` (M,) database indices best first, ``scores`` (M,) their trajectory scores
    (mean contrast-normalised distance, lower is better), ``length`` query frames used (< L at a sequence's start
    or after :meth:`OnlineSeqSLAM.reset`), ``shortened`` True when that is fewer than L, ``gap`` True when the
    window holds a gap or a repeated frame number."""

    ids: np.ndarray
    scores: np.ndarray
    length: int
    shortened: bool
    gap: bool


class OnlineSeqSLAM:
    """Causal SeqSLAM-style matcher over a fixed database, one query frame per :meth:`push`.

    Example (not run: ``stream`` and ``index`` are yours)::

        matcher = OnlineSeqSLAM(db_descriptors, db_order, SequenceConfig(length=10))
        for descriptor, frame in stream:                # (D,) float32, int frame number
            ids, _ = index.search(descriptor[None], 50)  # the frame's shortlist from any index
            match = matcher.push(descriptor, ids[0], frame)
            best = match.ids[0]

    ``database`` (N, D) descriptors (memory-mapped is fine: only the rows trajectories touch are read);
    ``database_order`` the database's :class:`SequenceOrder` (None: one sequence in list order); ``config.centred``
    must be False. Call :meth:`reset` when the query stream starts a new sequence. ``frame`` numbers may jump
    (gaps), repeat (a stopped vehicle) or go back (reversing): offsets follow the recorded numbers.
    """

    def __init__(self, database: np.ndarray, database_order: SequenceOrder | None = None,
                 config: SequenceConfig = DEFAULT) -> None:
        if config.centred:
            raise ValueError("OnlineSeqSLAM is causal: it cannot see future frames; use seqslam_rank for centred")
        self.database, self.config = database, config
        self.layout = DatabaseLayout.from_order(database_order, len(database))
        self.norms = squared_norms(database)  # ‖x‖² of every database row, read once (extended as it grows)
        self.history: deque[tuple[np.ndarray, int, np.ndarray]] = deque(maxlen=config.length)

    def _norms(self) -> np.ndarray:
        """‖x‖² of the database rows, extended by the rows appended since (a database that grows while it runs)."""
        have, rows = len(self.norms), len(self.database)
        if have > rows:
            self.norms = squared_norms(self.database)
        elif have < rows:
            self.norms = np.concatenate([self.norms, squared_norms(self.database[have:rows])])
        return self.norms

    def reset(self) -> None:
        """Forget the query frames seen so far (a new query sequence starts)."""
        self.history.clear()

    def push(self, descriptor: np.ndarray, candidates: np.ndarray, frame: int | None = None) -> SequenceMatch:
        """Add the current query frame (D,) with its shortlist ``candidates`` (M,) database indices (-1 ignored)
        and frame number (None: the previous one + 1); return the best M (M = len(candidates)) of its candidates
        and the top ``config.propagate`` of the earlier frames' shortlists carried along the trajectory."""
        descriptor = np.asarray(descriptor, np.float32).reshape(-1)
        if descriptor.shape[0] != self.database.shape[1]:
            raise ValueError(f"query descriptor has {descriptor.shape[0]} dimensions, the database "
                             f"{self.database.shape[1]}")
        if frame is None:
            frame = self.history[-1][1] + 1 if self.history else 0
        own = np.asarray(candidates, np.int64).reshape(-1)
        self.history.append((descriptor, int(frame), own))
        frames = np.array([h[1] for h in self.history], np.int64)
        window = np.stack([h[0] for h in self.history])
        offsets = frames - frames[-1]
        earlier = [h[2] for h in self.history][:-1]
        candidates = propagated([own, *earlier], np.concatenate([[0], offsets[:-1]]), self.layout, self.config)
        scores, _ = score_candidates(window, offsets, candidates, self.database, self.layout, self.config,
                                     self._norms())
        ids, scores = rank_shortlist(candidates, scores)
        ids, scores = ids[:len(own)], scores[:len(own)]  # as many as the shortlist given
        return SequenceMatch(ids, scores, len(frames), len(frames) < self.config.length,
                             bool((np.diff(frames) != 1).any()))
