"""Online causal sequence matching for a stream: the plain trajectory score over the whole map (raw or standardised
over the frames seen so far), raw trajectory distance over the shortlist, or SeqSLAM.

``diagonal`` scores every searchable entry by :class:`netvlad.match.diagonal.OnlineDiagonal` — the causal
score ``netvlad evaluate --sequence-method diagonal`` ranks by (mean squared L2 along the best constant-velocity
trajectory, lower is surer). ``diagonal-causal-standardised`` is the same over each entry's squared distances
standardised by their statistics over the frames seen since it became searchable (``OnlineDiagonal(seen_only=
True)``, lower is surer, may be negative). ``distance`` scores a frame's shortlist by
:class:`netvlad.match.trajectory_distance.TrajectoryDistance` (mean L2 along the best trajectory, lower is surer).
``seqslam`` runs the contrast-normalised :class:`OnlineSeqSLAM` over the shortlist. A sequence method without a
frame-by-frame matcher here is refused with one line.

Against a map, the matcher runs over the map's descriptors in their order (one sequence). For loop closures the
database is the stream itself, growing one entry per frame: :class:`GrowingSeqSLAM` gives the matcher a layout of
one sequence in id order that ends at the newest searchable entry (those older than the excluded recent window),
without any per-frame O(N) array, so a frame costs O(M · L · (V + W)) descriptor distances over its shortlist M,
never the map. The reported score is the negated trajectory score — how many local standard deviations the best
trajectory lies below its neighbourhood: higher is surer.
"""

from __future__ import annotations

import numpy as np

from netvlad.errors import BadInputError
from netvlad.match.diagonal import OnlineDiagonal
from netvlad.match.seqslam import OnlineSeqSLAM
from netvlad.match.sequence import DEFAULT_STREAM_SCORE, METHODS, STREAM_SCORES, SequenceConfig
from netvlad.match.trajectory_distance import TrajectoryDistance

DIAGONAL = ("diagonal", "diagonal-causal-standardised")  # scored by OnlineDiagonal over every searchable entry


class _Identity:
    """``layout.order`` / ``layout.position`` of one sequence in id order: each id is its own position."""

    def __getitem__(self, ids) -> np.ndarray:
        return np.asarray(ids, dtype=np.int64)


class _Constant:
    """``layout.start`` / ``layout.stop`` of one sequence: the same bound for every id."""

    def __init__(self, value: int) -> None:
        self.value = int(value)

    def __getitem__(self, ids) -> np.ndarray:
        return np.full(np.shape(ids), self.value, dtype=np.int64)


class GrowingLayout:
    """A :class:`netvlad.match.seqslam.DatabaseLayout` of ``stop`` entries forming one sequence in id order."""

    order = position = _Identity()
    start = _Constant(0)

    def __init__(self, stop: int) -> None:
        self.stop, self.size = _Constant(stop), int(stop)

    def __len__(self) -> int:
        return self.size


class GrowingSeqSLAM(OnlineSeqSLAM):
    """:class:`OnlineSeqSLAM` over a database that grows while it runs (the stream's own earlier frames)."""

    def __init__(self, dim: int, config: SequenceConfig) -> None:
        super().__init__(np.zeros((0, int(dim)), np.float32), None, config)

    def push_growing(self, descriptor: np.ndarray, candidates: np.ndarray, database: np.ndarray, searchable: int,
                     frame: int | None = None):
        """:meth:`push` with ``database`` ``(count, D)`` of which the first ``searchable`` rows may be matched."""
        self.database, self.layout = database, GrowingLayout(searchable)
        return self.push(descriptor, candidates, frame)


class StreamSequence:
    """The per-frame sequence step of ``netvlad stream``: best id and its score, or Nones; ``method`` one of
    :data:`netvlad.match.sequence.STREAM_SCORES` (``higher_is_better`` says which way its score points);
    ``config`` a causal :class:`SequenceConfig` of ``length`` frames (velocities, SeqSLAM's contrast radius,
    shortlist and propagation; None: the defaults), ignored by ``distance``."""

    def __init__(self, length: int, dim: int, map_descriptors: np.ndarray | None = None,
                 method: str = DEFAULT_STREAM_SCORE, config: SequenceConfig | None = None) -> None:
        if method not in STREAM_SCORES.names() and method in METHODS.names():
            raise BadInputError(f"sequence method {method!r} cannot run frame by frame on a stream; choose one of "
                                f"{', '.join(STREAM_SCORES.names())}", hint=f"--sequence-score {DEFAULT_STREAM_SCORE}")
        score = STREAM_SCORES.get(method)  # an unknown name: one line listing them
        self.method, self.map = method, map_descriptors
        self.higher_is_better = score.higher_is_better
        if config is not None and (config.length != length or config.centred):
            raise ValueError(f"config must be causal with length {length}, got {config}")
        if method in DIAGONAL:  # the whole map (or every searchable entry): no shortlist
            self.config = SequenceConfig(length=length) if config is None else config
            self.shortlist = 1
            self.matcher = OnlineDiagonal(map_descriptors if map_descriptors is not None
                                          else np.zeros((0, int(dim)), np.float32), None, self.config,
                                          seen_only=method == "diagonal-causal-standardised")
            return
        if method == "distance":
            self.matcher = TrajectoryDistance(length)
            self.shortlist = self.matcher.shortlist
            return
        self.config = SequenceConfig(length=length) if config is None else config
        self.shortlist = self.config.shortlist
        self.matcher = (OnlineSeqSLAM(map_descriptors, None, self.config) if map_descriptors is not None
                        else GrowingSeqSLAM(dim, self.config))

    def reset(self) -> None:
        """Forget the frames of the window (a new sequence starts); a standardised score's statistics stay."""
        self.matcher.reset()

    def push(self, descriptor: np.ndarray, candidates: np.ndarray, database: np.ndarray | None = None,
             searchable: int = 0, frame: int | None = None) -> tuple[int | None, float | None]:
        """Add the current frame ``(D,)`` with its shortlist ``candidates`` ``(M,)`` (−1: none); ``database`` and
        ``searchable`` (rows that may be matched) for a growing database; ``frame`` its frame number (None: the
        previous one + 1; a gap moves the trajectory by as many map entries; ``distance`` ignores it). -> (best id,
        score), or (None, None) with an empty shortlist."""
        if self.method in DIAGONAL:
            if self.map is None:
                self.matcher.database = database
            ranking = self.matcher.push(descriptor, frame, count=None if self.map is not None else searchable, k=1)
            if ranking.ranked[0, 0] < 0:
                return None, None
            return int(ranking.ranked[0, 0]), float(ranking.scores[0, 0])
        if self.method == "distance":
            if self.map is not None:
                return self.matcher.push(descriptor, candidates, self.map, len(self.map))
            return self.matcher.push(descriptor, candidates, database, searchable)
        if isinstance(self.matcher, GrowingSeqSLAM):
            match = self.matcher.push_growing(descriptor, candidates, database, searchable, frame)
        else:
            match = self.matcher.push(descriptor, candidates, frame)
        finite = np.isfinite(match.scores)
        if not finite.any():
            return None, None
        best = int(np.flatnonzero(finite)[0])
        return int(match.ids[best]), -float(match.scores[best])
