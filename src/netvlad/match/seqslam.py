"""SeqSLAM-style sequence matching over a shortlist (Milford & Wyeth, ICRA 2012), offline and online.

For each of the current query frame's M candidate database frames, the best constant-velocity trajectory through
the locally contrast-normalised distances of the L query frames around it. Read in order:

- where trajectories may go: the database frames of each sequence in frame order (:class:`DatabaseLayout`), and
  each query frame's window of neighbouring query frames, never across a sequence boundary;
- the trajectory scores of many query windows at once: each candidate database frame's block of neighbouring
  database rows is gathered once and compared with all L query frames of its window in one batched matmul
  (float32), then the contrast normalisation and the constant-velocity sums are tensor reductions — no Python loop
  per query, candidate or trajectory; memory is bounded by ``max_memory`` bytes of gathered rows, whatever the
  database size;
- offline ranking (:func:`seqslam_rank`): only the distances a trajectory (and its normalisation window) touches are
  computed, so work is O(M · L · (W + V·L)) descriptor distances per query frame and memory is flat in N;
- online matching (:class:`OnlineSeqSLAM`): fed one query frame at a time (a robot's camera), it scores the frame's
  shortlist with the trajectories through the L−1 frames before it; work per frame is O(M · L · (V + W)) descriptor
  distances and its memory the last L query descriptors, independent of the map size.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from netvlad.data.sequences import SequenceOrder
from netvlad.match.sequence import DEFAULT, SequenceConfig
from netvlad.search.exact import read_rows


@dataclass(frozen=True, eq=False)
class DatabaseLayout:
    """Database images laid out sequence after sequence, each in frame order.

    ``order`` (N,): the image at each layout position; ``position`` (N,): each image's layout position;
    ``start`` / ``stop`` (N,): the layout positions where each image's sequence begins and ends (exclusive).
    A trajectory stepping ``s`` database frames from image ``j`` lands on ``order[position[j] + s]`` when that lies
    in ``[start[j], stop[j])``; consecutive layout positions are consecutive recorded frames, gaps included.

    Examples:
        >>> order = SequenceOrder.from_keys(["b", "a", "a", "b"], frames=[1, 7, 6, 0])
        >>> layout = DatabaseLayout.from_order(order)
        >>> layout.order, layout.start, layout.stop  # sequence b (images 3, 0), then a (images 2, 1)
        (array([3, 0, 2, 1]), array([0, 2, 2, 0]), array([2, 4, 4, 2]))
    """

    order: np.ndarray
    position: np.ndarray
    start: np.ndarray
    stop: np.ndarray

    @classmethod
    def from_order(cls, sequence: SequenceOrder | None, size: int | None = None) -> DatabaseLayout:
        """The layout of ``sequence`` (None: ``size`` images forming one sequence in list order)."""
        if sequence is None:
            sequence = SequenceOrder.single(np.arange(int(size or 0)))
        members = sequence.members()
        order = np.concatenate(members) if members else np.zeros(0, np.int64)
        position = np.empty(len(order), np.int64)
        position[order] = np.arange(len(order))
        start, stop = np.empty(len(order), np.int64), np.empty(len(order), np.int64)
        offset = 0
        for part in members:
            start[part], stop[part] = offset, offset + len(part)
            offset += len(part)
        return cls(order, position, start, stop)

    def __len__(self) -> int:
        return len(self.order)


@dataclass(frozen=True)
class QueryWindow:
    """Query frames scored with query ``index``: ``members`` (K,) image indices in frame order and ``offsets`` (K,)
    their frame numbers minus the current one's (negative before it); ``shortened`` when K < L, ``gap`` when two
    neighbours in the window are not one frame apart (a gap or a repeated frame).

    Examples:
        >>> window = query_windows(SequenceOrder.single([0, 1, 2, 4]), before=2, after=0)[3]
        >>> window.index, window.members, window.offsets, window.shortened, window.gap
        (3, array([1, 2, 3]), array([-3, -2,  0]), False, True)
    """

    index: int
    members: np.ndarray
    offsets: np.ndarray
    shortened: bool
    gap: bool


def query_windows(order: SequenceOrder, before: int, after: int) -> list[QueryWindow]:
    """For every query image (in list order), its window of up to ``before`` frames before and ``after`` after it
    in its own sequence (frame order, stable for repeats).

    Examples:
        >>> windows = query_windows(SequenceOrder.single([0, 1, 2, 4, 5]), before=2, after=0)
        >>> [(w.members.tolist(), w.offsets.tolist(), w.gap) for w in windows[2:]]  # frame 3 is missing
        [([0, 1, 2], [-2, -1, 0], False), ([1, 2, 3], [-3, -2, 0], True), ([2, 3, 4], [-3, -1, 0], True)]
    """
    windows: list[QueryWindow | None] = [None] * len(order)
    for part in order.members():
        frames = order.frames[part]
        for t, index in enumerate(part):
            lo, hi = max(0, t - before), min(len(part), t + after + 1)
            window = frames[lo:hi]
            windows[int(index)] = QueryWindow(int(index), part[lo:hi], window - frames[t],
                                              hi - lo < before + after + 1, bool((np.diff(window) != 1).any()))
    return windows  # type: ignore[return-value]


@dataclass(frozen=True)
class WindowMatrix:
    """Every query's window at once: ``members`` (Q, K) image indices in frame order (−1 where the window is
    shorter), ``offsets`` (Q, K) frame numbers minus the current one's (0 where empty), ``valid`` (Q, K), the current
    frame in column ``here`` of every row; ``shortened`` / ``gaps`` (Q,) as :class:`QueryWindow`'s. Row q is query
    q (list order)."""

    members: np.ndarray
    offsets: np.ndarray
    valid: np.ndarray
    here: int
    shortened: np.ndarray
    gaps: np.ndarray


def window_matrix(order: SequenceOrder, before: int, after: int) -> WindowMatrix:
    """The windows of :func:`query_windows` as (Q, before + 1 + after) arrays, without a loop over queries."""
    width = before + 1 + after
    members = np.full((len(order), width), -1, np.int64)
    offsets = np.zeros((len(order), width), np.int64)
    for part in order.members():
        columns = np.arange(len(part))[:, None] + np.arange(-before, after + 1)
        inside = (columns >= 0) & (columns < len(part))
        picked = np.where(inside, part[np.clip(columns, 0, len(part) - 1)], -1)
        members[part] = picked
        offsets[part] = np.where(inside, order.frames[np.maximum(picked, 0)] - order.frames[part][:, None], 0)
    valid = members >= 0
    steps = np.diff(offsets, axis=1) != 1
    gaps = (steps & valid[:, 1:] & valid[:, :-1]).any(axis=1)
    return WindowMatrix(members, offsets, valid, before, valid.sum(axis=1) < width, gaps)


EPS = 1e-6  # floor of the window's standard deviation, so a flat window normalises to 0, not ∞
MAX_MEMORY = 64 * 2**20  # bytes of gathered database rows and score tensors per batch of query windows


def _in_memory(database: np.ndarray) -> bool:
    """A float32 array in memory (rows gathered by ``take``), not a store's memory map or float16."""
    return type(database) is np.ndarray and database.dtype == np.float32


def _rows(database: np.ndarray, ids: np.ndarray) -> torch.Tensor:
    """Database rows ``ids`` (P,) as a float32 (P, D) tensor: in memory by one ``take``, anything else by
    :func:`read_rows` (sorted ``ids`` read forwards)."""
    if _in_memory(database):
        return torch.from_numpy(np.take(database, ids, axis=0))
    return torch.from_numpy(read_rows(database, ids))


def _blocks(candidates: np.ndarray, reach: np.ndarray, layout: DatabaseLayout, radius: int):
    """Per window b and candidate c: the layout positions (B, C, W) of the database block every trajectory point
    (``reach`` (B, K, V) steps from the candidate) and its normalisation window can reach, whether each lies in the
    candidate's sequence (B, C, W), and the block's first offset (B,) from the candidate."""
    first = reach.min(axis=(1, 2)) - radius
    width = int((reach.max(axis=(1, 2)) - reach.min(axis=(1, 2))).max()) + 2 * radius + 1
    cand = np.maximum(candidates, 0)
    base = layout.position[cand] + first[:, None]
    positions = base[:, :, None] + np.arange(width)
    inside = ((positions >= layout.start[cand][:, :, None]) & (positions < layout.stop[cand][:, :, None])
              & (candidates >= 0)[:, :, None])
    return positions, inside, first


def squared_norms(database: np.ndarray, chunk_bytes: int = 16 * 2**20) -> np.ndarray:
    """‖x‖² (N,) float32 of every database row, read ``chunk_bytes`` at a time (one pass over a store)."""
    out = np.empty(len(database), np.float32)
    chunk = max(1, chunk_bytes // (4 * max(1, database.shape[1])))
    for a in range(0, len(database), chunk):
        if type(database) is np.ndarray and database.dtype == np.float32:  # in memory: a view, no copy
            rows = database[a:a + chunk]
        else:
            rows = read_rows(database, np.arange(a, min(a + chunk, len(database))))
        out[a:a + len(rows)] = np.einsum("ij,ij->i", rows, rows)
    return out


def distances(frames: np.ndarray, slots: np.ndarray, database: np.ndarray, norms: np.ndarray,
              layout: DatabaseLayout, positions: np.ndarray, dense: bool | None = None) -> torch.Tensor:
    """Euclidean distances (B, K, C, W) float32 of each window's K query frames (``slots`` (B, K) rows of
    ``frames`` (F, D)) to its blocks' database rows (``norms`` (N,): their ‖x‖²), by ‖q‖² + ‖x‖² − 2 q·x.

    Where the blocks share rows (neighbouring candidates, a small database), one matmul of the F distinct frames
    against the U distinct rows does fewer multiplications than each window against its own blocks: then that
    (``dense`` True / False forces one way)."""
    b, c, w = positions.shape
    ids = layout.order[np.clip(positions, 0, len(layout) - 1)].reshape(-1)
    unique, inverse = np.unique(ids, return_inverse=True)
    queries = torch.from_numpy(np.ascontiguousarray(frames, np.float32))
    query_norms = torch.linalg.vector_norm(queries, dim=1).square_()
    row_bytes = 4 * database.shape[1]
    step = max(1, int(MAX_MEMORY // 2 // row_bytes))  # rows read at a time: half the budget
    if dense or dense is None and len(frames) * len(unique) <= slots.size * c * w:
        table = torch.empty((len(frames), len(unique)))  # (F, U)
        for a in range(0, len(unique), step):
            rows = _rows(database, unique[a:a + step])
            table[:, a:a + step] = torch.addmm(query_norms[:, None] + torch.from_numpy(norms[unique[a:a + step]]),
                                               queries, rows.T, alpha=-2)
        table = table.clamp_(min=0).sqrt_()
        return table[torch.from_numpy(slots)[:, :, None, None], torch.from_numpy(inverse.reshape(b, 1, c, w))]
    out = torch.empty((b, slots.shape[1], c, w))
    step = max(1, step // (c * w))  # windows whose rows fit half the budget
    for a in range(0, b, step):
        part = slice(a * c * w, (a + step) * c * w)
        if _in_memory(database):
            rows = _rows(database, ids[part])
        else:  # a store: each distinct row read once
            needed, back = np.unique(ids[part], return_inverse=True)
            rows = _rows(database, needed)[torch.from_numpy(back)]
        rows = rows.reshape(-1, c * w, rows.shape[1])
        picked = torch.from_numpy(slots[a:a + step])
        squared = torch.from_numpy(norms[ids[part]]).reshape(len(rows), 1, -1) + query_norms[picked][:, :, None]
        squared = torch.baddbmm(squared, queries[picked], rows.transpose(1, 2), alpha=-2)  # (B', K, C·W)
        out[a:a + step] = squared.clamp_(min=0).sqrt_().reshape(len(rows), -1, c, w)
    return out


def _window_sums(values: torch.Tensor, span: int) -> torch.Tensor:
    """Sums (..., W − span + 1) of ``values`` (..., W) over every ``span`` consecutive entries of the last axis."""
    prefix = values.cumsum(-1)
    sums = prefix[..., span - 1:].clone()
    sums[..., 1:] -= prefix[..., :-span]
    return sums


def _normalised(d: torch.Tensor, inside: np.ndarray, centre: np.ndarray, kvalid: np.ndarray,
                radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Contrast-normalised distances (B, K, C, V) float64 and whether each counts (B, K, C, V), at the trajectory
    points ``centre`` (B, K, V) (block columns) of distances ``d`` (B, K, C, W) whose rows lie in the candidate's
    sequence where ``inside`` (B, C, W); 0 at points outside it and in empty window slots."""
    b, k, c, w = d.shape
    span = 2 * radius + 1
    mask = torch.from_numpy(inside).unsqueeze(1)  # (B, 1, C, W)
    # shifted by one distance of the row and summed in float64, so the one-pass variance E[y²] − E[y]² loses
    # nothing of the float32 distances' precision
    shifted = torch.where(mask, d - d[..., w // 2:w // 2 + 1], 0.0).double()
    sums = _window_sums(shifted, span)  # (B, K, C, W − 2R): window sums around each possible centre
    squares = _window_sums(shifted.square(), span)
    counts = _window_sums(mask.float(), span).clamp_(min=1).expand(b, k, c, w - span + 1)
    index = torch.from_numpy(centre).unsqueeze(2).expand(b, k, c, centre.shape[2])  # (B, K, C, V)
    corner = index - radius
    count = counts.gather(3, corner)
    mean = sums.gather(3, corner) / count
    variance = (squares.gather(3, corner) / count - mean * mean).clamp_(min=0)
    point = mask.expand(b, k, c, w).gather(3, index) & torch.from_numpy(kvalid)[:, :, None, None]
    value = (shifted.gather(3, index) - mean) / (variance.sqrt_() + EPS)
    return torch.where(point, value, 0.0), point


def score_windows(frames: np.ndarray, slots: np.ndarray, offsets: np.ndarray, kvalid: np.ndarray,
                  candidates: np.ndarray, database: np.ndarray, layout: DatabaseLayout, config: SequenceConfig,
                  norms: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Trajectory scores (B, C) float64 (inf where ``candidates`` is −1; lower is better) and points inside the
    database sequence (B, C) of the best velocity, for B query windows at once.

    ``frames`` (F, D) query descriptors, ``slots`` (B, K) the rows of ``frames`` in each window (any row where
    ``kvalid`` is False), ``offsets`` (B, K) their frame numbers minus the current frame's,
    ``kvalid`` (B, K) which of the K slots hold a frame, ``candidates`` (B, C) database indices (−1 = none) as the
    current frame's match, ``norms`` (N,) the database's :func:`squared_norms` (None: computed). A trajectory at
    velocity v visits database frame ``position + round(v · offset)`` for each query frame; points outside the
    candidate's sequence count 0 (never crossing a boundary); each distance is normalised by the mean and standard
    deviation of that query frame's distances over the ±R database frames around the point (within the sequence);
    the sum is divided by the window's frame count; the best velocity wins.
    """
    radius = config.contrast_radius
    steps, far = trajectory_steps(offsets, kvalid, config.velocities, len(layout) + radius + 1)  # (B, K, V)
    positions, inside, first = _blocks(candidates, steps, layout, radius)
    norms = squared_norms(database) if norms is None else norms
    d = distances(frames, slots, database, norms, layout, positions)  # (B, K, C, W)
    normalised, point = _normalised(d, inside, steps - first[:, None, None], kvalid, radius)  # (B, K, C, V)
    if far.any():  # points beyond the database: outside every sequence, so they count 0
        near = torch.from_numpy(~far)[:, :, None, :]
        normalised, point = torch.where(near, normalised, 0.0), point & near
    frames = torch.from_numpy(np.maximum(kvalid.sum(1), 1)).to(torch.float64)
    scores = normalised.sum(1) / frames[:, None, None]  # (B, C, V)
    best, which = scores.min(dim=2)
    lengths = torch.gather(point.sum(1), 2, which.unsqueeze(2)).squeeze(2)
    best = torch.where(torch.from_numpy(candidates >= 0), best, torch.inf)
    return best.numpy(), lengths.numpy()


def trajectory_steps(offsets: np.ndarray, kvalid: np.ndarray, velocities, limit: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Database steps ``round(v · offset)`` (B, K, V) int64 of each window slot at each velocity (0 in empty slots
    and where the step is ``far``: beyond ``limit`` = database size + R + 1, so that the point and its whole
    normalisation window lie outside every sequence) and ``far`` (B, K, V). Frame numbers far apart (milliseconds, a
    gap of years) thus never widen the gathered blocks past the database."""
    velocities = np.asarray(velocities, np.float64)
    exact = np.rint(velocities[None, None, :] * offsets[:, :, None].astype(np.float64))  # (B, K, V) float64
    far = (np.abs(exact) > limit) & kvalid[:, :, None]
    return np.where(kvalid[:, :, None] & ~far, exact, 0).astype(np.int64), far


def step_spread(offsets: np.ndarray, velocities, limit: int) -> int:
    """The widest span of trajectory steps (max − min over slots and velocities) of any window, ``offsets``
    (Q, K) (0 in empty slots), steps beyond ``limit`` counting as 0 (see :func:`trajectory_steps`); + 1 for rounding.
    From the extreme offsets and velocities alone (a product's extremes lie at the corners), so no (Q, K, V) array."""
    if not offsets.size:
        return 1
    v = np.array([min(velocities), max(velocities)], np.float64)
    o = np.stack([offsets.min(axis=1), offsets.max(axis=1)], axis=1).astype(np.float64)  # (Q, 2), both include 0
    corners = np.clip((o[:, :, None] * v[None, None, :]).reshape(len(o), 4), -limit, limit)
    return int(np.ceil((corners.max(axis=1) - corners.min(axis=1)).max())) + 1


def batch_size(candidates: int, width: int, length: int, points: int, max_memory: float = MAX_MEMORY) -> int:
    """Query windows per batch so that their distances (``candidates`` × ``length`` × ``width``) and normalisation
    windows (``candidates`` × ``points``, about six float32 copies) fit half of ``max_memory`` bytes (the gathered
    database rows take the other half: :func:`distances` reads them a few windows at a time)."""
    return max(1, int(max_memory / 2 // max(1, 4 * candidates * (length * width + 6 * points))))


logger = logging.getLogger(__name__)


def score_candidates(window: np.ndarray, offsets: np.ndarray, candidates: np.ndarray, database: np.ndarray,
                     layout: DatabaseLayout, config: SequenceConfig, norms: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Trajectory scores (M,) (lower is better) and points inside the database sequence (M,) of database
    ``candidates`` (M,) as the match of the query frame at offset 0 of ``window`` (K, D) query descriptors at frame
    ``offsets`` (K,); see :func:`~netvlad.match.seqslam.score_windows` (``norms``: its database ‖x‖²).

    Examples:
        >>> route = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)  # a route's 30 descriptors
        >>> revisit = np.concatenate([route[10:14], route[25:26]])  # frames 10-13, then one that looks like 25
        >>> layout, config = DatabaseLayout.from_order(None, len(route)), SequenceConfig(length=5)
        >>> scores, lengths = score_candidates(revisit, np.arange(-4, 1), np.array([14, 25]), route, layout, config)
        >>> bool(scores[0] < scores[1]), lengths  # the trajectory ending at 14 wins
        (True, array([5, 5]))
    """
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
    shorter than L, ``gaps`` (Q,) bool window holding a gap or repeated frame.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> database, queries = rng.normal(size=(30, 8)), rng.normal(size=(6, 8))
        >>> order = SequenceOrder.single([0, 1, 2, 3, 5, 6])  # frame 4 was dropped
        >>> shortlist = np.tile(np.arange(5), (6, 1))
        >>> ranking = seqslam_rank(queries, database, order, None, shortlist, SequenceConfig(length=3))
        >>> ranking.ranked.shape, ranking.lengths, ranking.gaps
        ((6, 5), array([1, 2, 3, 3, 3, 3]), array([False, False, False, False,  True,  True]))
        >>> ranking.summary()
        {'queries': 6, 'shortened_windows': 2, 'windows_with_gaps': 2}
    """

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

    Shape:
        - queries: ``(Q, D)``; database: ``(N, D)``; shortlist: ``(Q, M)``
        - output: a :class:`SequenceRanking` with ``ranked`` and ``scores`` ``(Q, M)``

    Examples:
        >>> from netvlad.search import exact_search
        >>> route = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)  # a route's 30 descriptors
        >>> revisit = np.concatenate([route[10:14], route[25:26]])  # frames 10-13, then one that looks like 25
        >>> shortlist = exact_search(route, revisit, k=5)[1]  # frame by frame, the last frame's best is 25
        >>> ranking = seqslam_rank(revisit, route, SequenceOrder.single(range(5)), None, shortlist,
        ...                        SequenceConfig(length=5))
        >>> ranking.ranked[:, 0], ranking.shortened
        (array([10, 11, 12, 13, 14]), array([ True,  True,  True,  True, False]))
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
    reach = step_spread(windows.offsets, config.velocities, len(layout) + config.contrast_radius + 1)  # the true
    # span of the frame numbers, whatever their unit: milliseconds need wider blocks, hence smaller batches
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


@dataclass(frozen=True)
class SequenceMatch:
    """One query frame's result: ``ids`` (M,) database indices best first, ``scores`` (M,) their trajectory scores
    (mean contrast-normalised distance, lower is better), ``length`` query frames used (< L at a sequence's start
    or after :meth:`OnlineSeqSLAM.reset`), ``shortened`` True when that is fewer than L, ``gap`` True when the
    window holds a gap or a repeated frame number.

    Examples:
        >>> matcher = OnlineSeqSLAM(np.eye(4, dtype=np.float32), config=SequenceConfig(length=3, contrast_radius=1))
        >>> match = matcher.push(np.array([0, 0, 1, 0], np.float32), candidates=np.array([2, 0]))
        >>> int(match.ids[0]), match.length, match.shortened  # the first frame: a window of one
        (2, 1, True)
    """

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

    Examples:
        >>> from netvlad.search import exact_search
        >>> route = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)  # a route's 30 descriptors
        >>> revisit = np.concatenate([route[10:14], route[25:26]])  # frames 10-13, then one that looks like 25
        >>> matcher = OnlineSeqSLAM(route, config=SequenceConfig(length=5))
        >>> matches = [matcher.push(frame, exact_search(route, frame[None], k=5)[1][0]) for frame in revisit]
        >>> [int(match.ids[0]) for match in matches], matches[-1].length, matches[-1].shortened
        ([10, 11, 12, 13, 14], 5, False)
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
