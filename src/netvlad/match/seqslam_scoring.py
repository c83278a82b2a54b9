"""Trajectory scores of many query windows at once: each candidate database frame's block of neighbouring database
rows is gathered once and compared with all L query frames of its window in one batched matmul (float32), then the
contrast normalisation and the constant-velocity sums are tensor reductions — no Python loop per query, candidate
or trajectory. Memory is bounded by ``max_memory`` bytes of gathered rows, whatever the database size."""

from __future__ import annotations

import numpy as np
import torch

from netvlad.match.sequence import SequenceConfig
from netvlad.match.sequence_layout import DatabaseLayout
from netvlad.search.exact import read_rows

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
        rows = torch.from_numpy(read_rows(database, np.arange(a, min(a + chunk, len(database)))))
        out[a:a + len(rows)] = torch.linalg.vector_norm(rows, dim=1).square_().numpy()
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
    velocities = np.asarray(config.velocities, np.float64)
    steps = np.rint(velocities[None, None, :] * offsets[:, :, None].astype(np.float64)).astype(np.int64)  # (B,K,V)
    steps = np.where(kvalid[:, :, None], steps, 0)
    positions, inside, first = _blocks(candidates, steps, layout, radius)
    norms = squared_norms(database) if norms is None else norms
    d = distances(frames, slots, database, norms, layout, positions)  # (B, K, C, W)
    normalised, point = _normalised(d, inside, steps - first[:, None, None], kvalid, radius)  # (B, K, C, V)
    frames = torch.from_numpy(np.maximum(kvalid.sum(1), 1)).to(torch.float64)
    scores = normalised.sum(1) / frames[:, None, None]  # (B, C, V)
    best, which = scores.min(dim=2)
    lengths = torch.gather(point.sum(1), 2, which.unsqueeze(2)).squeeze(2)
    best = torch.where(torch.from_numpy(candidates >= 0), best, torch.inf)
    return best.numpy(), lengths.numpy()


def batch_size(candidates: int, width: int, length: int, points: int, max_memory: float = MAX_MEMORY) -> int:
    """Query windows per batch so that their distances (``candidates`` × ``length`` × ``width``) and normalisation
    windows (``candidates`` × ``points``, about six float32 copies) fit half of ``max_memory`` bytes (the gathered
    database rows take the other half: :func:`distances` reads them a few windows at a time)."""
    return max(1, int(max_memory / 2 // max(1, 4 * candidates * (length * width + 6 * points))))
