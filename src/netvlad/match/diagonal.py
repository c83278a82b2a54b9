"""The plain sequence baseline: every database frame scored by the raw squared distances along constant-velocity
trajectories through it, over the whole database — no contrast normalisation, no shortlist.

Query frame at offset o (frames from the current one) is compared with database frame ``position + round(v · o)``
of the candidate's own sequence, for each velocity v; the score is the mean of the squared L2 distances along the
trajectory (the sum divided by the window's frame count, so windows of different lengths stay comparable) and the
best velocity wins; lowest first. A trajectory point outside the candidate's database sequence (before its first
frame or after its last) counts as the largest possible squared distance, (‖q‖ + max‖x‖)² (4 for L2-normalised
descriptors), so a trajectory cut short never wins on fewer points.

Cost: one exact search's distance matrix plus L · V shifted additions per (query, database frame) pair. The
database is laid out sequence after sequence with ``reach`` columns of padding around each sequence (a shift is then
one contiguous slice) and cut into blocks of :data:`COLUMNS` columns: a block of queries gets one matrix product per
column block, every velocity and window frame adds slices of that same product while it is in cache, and the top k
is merged across column blocks (:class:`RunningTop`). Memory is bounded by
``max_memory`` bytes whatever the number of queries or database frames.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from netvlad.data.sequences import SequenceOrder
from netvlad.match.seqslam import MAX_MEMORY, DatabaseLayout, SequenceRanking, squared_norms, window_matrix
from netvlad.match.sequence import SequenceConfig
from netvlad.search.exact import read_rows

logger = logging.getLogger(__name__)

READ_ROWS = 8192  # database rows read (and multiplied) at a time
QUERY_BLOCK = 256  # query windows per block: the database is read once per block
COLUMNS = 2048  # padded database columns per step: a step's distance and score rows stay in cache
SCALE_FLOOR = 1e-6  # smallest standard deviation a standardised column is divided by (all queries equidistant)


class PaddedLayout:
    """Database layout positions mapped into a row with ``reach`` padding columns before and after each sequence:
    ``columns`` (N,) the padded column of each layout position, ``width`` the padded row length."""

    def __init__(self, layout: DatabaseLayout, reach: int) -> None:
        positions = np.arange(len(layout))
        sequence_start = layout.start[layout.order] if len(layout) else np.zeros(0, np.int64)
        # sequence number of each position: how many sequences started at or before it
        starts = np.unique(sequence_start)
        index = np.searchsorted(starts, sequence_start)
        self.reach = int(reach)
        self.columns = positions + (2 * index + 1) * self.reach
        self.width = len(layout) + 2 * len(starts) * self.reach


def trajectory_velocity_steps(config: SequenceConfig, offsets: np.ndarray) -> np.ndarray:
    """Database steps (V, ...) ``round(v · offset)`` of every velocity for frame ``offsets`` (...)."""
    velocities = np.asarray(config.velocities, np.float64).reshape((-1,) + (1,) * np.ndim(offsets))
    return np.rint(velocities * np.asarray(offsets, np.float64)[None]).astype(np.int64)


def reach_of(config: SequenceConfig, offsets: np.ndarray) -> int:
    """The largest number of database frames a trajectory moves from its candidate, for query frame ``offsets``
    (any shape; gaps make them longer than the window)."""
    return int(np.abs(trajectory_velocity_steps(config, offsets)).max(initial=0))


def padded_distances(frames: torch.Tensor, database: np.ndarray, norms: np.ndarray, layout: DatabaseLayout,
                     padded: PaddedLayout, bound: torch.Tensor, lo: int = 0, hi: int | None = None) -> torch.Tensor:
    """Squared L2 distances (F, hi − lo) float32 of query ``frames`` (F, D) to the database frames at padded columns
    ``lo`` to ``hi`` (default: the whole row), ``bound`` (F,) in the padding: one matrix product per
    :data:`READ_ROWS` database rows, written in place."""
    hi = padded.width if hi is None else hi
    first, last = np.searchsorted(padded.columns, [lo, hi])
    real = padded.columns[first:last] - lo
    if _run(real):  # one sequence's frames between padding: only the padding is filled with the bound
        out = np.empty((len(frames), hi - lo), np.float32)
        out[:, :real[0]], out[:, real[-1] + 1:] = bound.numpy()[:, None], bound.numpy()[:, None]
    else:
        out = np.repeat(bound.numpy()[:, None], hi - lo, axis=1)
    scaled = -2 * frames.numpy()  # exact: a power of two
    frame_norms = torch.linalg.vector_norm(frames, dim=1).square_().numpy()[:, None]
    for a in range(first, last, READ_ROWS):
        ids, columns = layout.order[a:min(a + READ_ROWS, last)], padded.columns[a:min(a + READ_ROWS, last)] - lo
        # numpy's BLAS: faster than torch's for this shape on the CPUs measured (docs/results/diagonal-cost.md)
        rows = database_rows(database, ids).numpy().T
        if _run(columns):  # the product written straight into its columns, no copy
            squared = np.matmul(scaled, rows, out=out[:, columns[0]:columns[-1] + 1])
        else:
            squared = scaled @ rows
        squared += frame_norms
        squared += norms[ids][None]
        np.maximum(squared, 0, out=squared)
        if not _run(columns):
            out[:, columns] = squared
    return torch.from_numpy(out)


def database_rows(database: np.ndarray, ids: np.ndarray) -> torch.Tensor:
    """Rows ``ids`` (R,) of ``database`` as a float32 (R, D) tensor: consecutive rows of an in-memory float32 array
    as a view (no copy), anything else read by :func:`read_rows`."""
    if _run(ids) and type(database) is np.ndarray and database.dtype == np.float32:
        return torch.from_numpy(database[ids[0]:ids[-1] + 1])
    return torch.from_numpy(read_rows(database, ids))


def _run(values: np.ndarray) -> bool:
    """Whether ``values`` (n ≥ 1,) are consecutive integers, so a slice can stand for them."""
    return len(values) > 0 and int(values[-1]) - int(values[0]) == len(values) - 1 and bool(
        (np.diff(values) == 1).all())


def window_sums(table: torch.Tensor, slots: np.ndarray, offsets: np.ndarray, valid: np.ndarray,
                config: SequenceConfig) -> torch.Tensor:
    """Summed squared trajectory distances (B, width) of B query windows, best velocity, at every padded column
    (padding columns, and columns whose trajectory leaves ``table``, hold no meaning). ``table`` (F, width) the
    window frames' padded distances, ``slots`` (B, K) their rows in it, ``offsets`` (B, K) frame offsets from the
    current frame, ``valid`` (B, K). Each velocity adds K shifted slices of the same table: no distance is
    computed twice."""
    width = table.shape[1]
    best = None
    steps = trajectory_velocity_steps(config, offsets)  # (V, B, K)
    for v in range(steps.shape[0]):
        total = torch.zeros((len(slots), width))
        for k in range(slots.shape[1]):  # K shifted slices added in place, in cache: one column block
            for step in np.unique(steps[v, valid[:, k], k]):
                rows = np.flatnonzero(valid[:, k] & (steps[v, :, k] == step))
                lo, hi = max(0, step), width + min(0, step)  # column c reads column c + step
                picked = slots[rows, k]
                if _run(picked):  # neighbouring windows: consecutive table rows, a view
                    shifted = table[picked[0]:picked[-1] + 1, lo:hi]
                else:
                    shifted = table[torch.from_numpy(picked), lo:hi]
                if _run(rows):  # every window, or a run of them (a block's first windows lack early frames)
                    total[rows[0]:rows[-1] + 1, lo - step:hi - step] += shifted
                else:
                    total[torch.from_numpy(rows), lo - step:hi - step] += shifted
        best = total if best is None else torch.minimum(best, total, out=best)
    return best


def window_counts(valid: np.ndarray) -> torch.Tensor:
    """Frames (B, 1) float32 of each window (at least 1): a window's sum over it is its mean squared distance."""
    return torch.from_numpy(np.maximum(valid.sum(axis=1), 1).astype(np.float32))[:, None]


class RunningTop:
    """The ``k`` lowest scores of each of ``rows`` rows over column blocks fed one at a time, with their positions.

    A block's scores below its row's current k-th wait in a pending list and are merged (one top-k) only once they
    outnumber the kept ones, so most blocks cost one comparison; a block where more than k per row would enter
    (the first) gives its own k lowest. Exact: a score is left out only when k kept ones are at most it."""

    def __init__(self, rows: int, k: int) -> None:
        self.k = k
        self.top = torch.full((rows, k), torch.inf)
        self.at = torch.zeros((rows, k), dtype=torch.int64)
        self.bar = np.full((rows, 1), np.inf, np.float32)  # each row's current k-th: scores at or above it stay out
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (rows, positions, scores)
        self.waiting = 0

    def add(self, score: torch.Tensor, first: int) -> None:
        """Feed ``score`` (rows, C) of positions ``first`` … ``first + C − 1``."""
        values = score.numpy()
        flat = np.flatnonzero(values < self.bar)
        if len(flat) > self.k * len(self.top):
            lowest, positions = torch.topk(score, min(self.k, score.shape[1]), dim=1, largest=False, sorted=False)
            self._merge(lowest, positions + first)
            return
        rows, columns = np.divmod(flat, values.shape[1])
        self.pending.append((rows, columns + first, values[rows, columns]))
        self.waiting += len(flat)
        if self.waiting > self.k * len(self.top):
            self._merge()

    def _merge(self, values: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> None:
        """Merge the pending scores (and ``values`` (rows, m) at ``positions``) into the kept k."""
        parts, places = [self.top], [self.at]
        if values is not None:
            parts.append(values)
            places.append(positions)
        if self.waiting:
            rows, at, scores = (np.concatenate(p) for p in zip(*self.pending, strict=True))
            order = np.argsort(rows, kind="stable")
            rows, at, scores = rows[order], at[order], scores[order]
            counts = np.bincount(rows, minlength=len(self.top))
            rank = np.arange(len(rows)) - (np.cumsum(counts) - counts)[rows]  # place within its row
            waiting = np.full((len(self.top), int(counts.max())), np.inf, np.float32)
            where = np.zeros(waiting.shape, np.int64)
            waiting[rows, rank], where[rows, rank] = scores, at
            parts.append(torch.from_numpy(waiting))
            places.append(torch.from_numpy(where))
            self.pending, self.waiting = [], 0
        self.top, pick = torch.topk(torch.cat(parts, dim=1), self.k, dim=1, largest=False, sorted=False)
        self.at = torch.gather(torch.cat(places, dim=1), 1, pick)
        self.bar = self.top.max(dim=1, keepdim=True).values.numpy()

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The k lowest (rows, k), lowest first (equal scores by position), and their positions (rows, k)."""
        self._merge()
        at, order = torch.sort(self.at, dim=1)
        top, order = torch.sort(torch.gather(self.top, 1, order), dim=1, stable=True)
        return top, torch.gather(at, 1, order)


def distance_sums(queries: np.ndarray, database: np.ndarray, max_memory: float = MAX_MEMORY
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sums and sums of squares of the squared L2 distances between ``queries`` (Q, D) and ``database`` (N, D): per
    database frame over the queries (N,) and per query over the database (Q,), float64, in one pass over the (Q, N)
    distances in blocks of at most ``max_memory`` bytes, nothing of that size kept."""
    norms = squared_norms(database).astype(np.float64)
    total, squares = np.zeros(len(database)), np.zeros(len(database))
    row_total, row_squares = np.zeros(len(queries)), np.zeros(len(queries))
    rows = max(1, min(READ_ROWS, int(max_memory // (8 * max(1, len(queries))))))
    q = np.asarray(read_rows(queries, np.arange(len(queries))), np.float64)
    q_norms = (q * q).sum(axis=1)[:, None]
    for a in range(0, len(database), rows):
        ids = np.arange(a, min(a + rows, len(database)))
        block = np.asarray(database_rows(database, ids).numpy(), np.float64)
        squared = np.maximum(q_norms + norms[ids][None] - 2 * q @ block.T, 0)
        total[ids], squares[ids] = squared.sum(axis=0), (squared * squared).sum(axis=0)
        row_total += squared.sum(axis=1)
        row_squares += (squared * squared).sum(axis=1)
    return total, squares, row_total, row_squares


def mean_and_deviation(total: np.ndarray, squares: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``count`` values from their sum and sum of squares (same shape)."""
    mean = total / max(1, count)
    return mean, np.sqrt(np.maximum(squares / max(1, count) - mean * mean, 0))


def query_statistics(queries: np.ndarray, database: np.ndarray, max_memory: float = MAX_MEMORY
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (N,) float64 of each database frame's squared L2 distances to every query
    (Q, D) (:func:`distance_sums`).

    Examples:
        >>> database = np.array([[0.0, 0.0], [3.0, 0.0]], np.float32)
        >>> queries = np.array([[1.0, 0.0], [2.0, 0.0]], np.float32)
        >>> query_statistics(queries, database)  # frame 0: distances 1 and 4; frame 1: 4 and 1
        (array([2.5, 2.5]), array([1.5, 1.5]))
    """
    total, squares, _, _ = distance_sums(queries, database, max_memory)
    return mean_and_deviation(total, squares, len(queries))


def standardise_columns(table: torch.Tensor, mean: np.ndarray, scale: np.ndarray, lo: int) -> torch.Tensor:
    """``table`` (F, C) of padded columns ``lo`` … ``lo + C − 1`` standardised in place by the padded rows
    ``mean`` and ``scale`` (width,)."""
    table -= torch.from_numpy(mean[lo:lo + table.shape[1]])
    table /= torch.from_numpy(scale[lo:lo + table.shape[1]])
    return table


def padded_statistics(queries: np.ndarray, database: np.ndarray, layout: DatabaseLayout, padded: PaddedLayout,
                      max_memory: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`query_statistics` laid out on the padded row (width,) float32, the standard deviation floored at
    :data:`SCALE_FLOOR`. A padding column takes the smallest mean and the smallest deviation, so its bound
    (‖q‖ + max‖x‖)² standardises to at least every real column's value: a trajectory cut short still never wins."""
    mean, scale = query_statistics(queries, database, max_memory)
    scale = np.maximum(scale, SCALE_FLOOR)
    out_mean = np.full(padded.width, mean.min(initial=0.0), np.float32)
    out_scale = np.full(padded.width, scale.min(initial=1.0), np.float32)
    out_mean[padded.columns], out_scale[padded.columns] = mean[layout.order], scale[layout.order]
    return out_mean, out_scale


SEED_FRAMES = 50  # pseudo-frames of a row's own statistics that seed its database frames' seen-so-far statistics


def seen_standardised(distances: np.ndarray, total: np.ndarray, squares: np.ndarray, seen: np.ndarray,
                      row_mean: np.ndarray, row_deviation: np.ndarray) -> np.ndarray:
    """Squared distances ``distances`` (R, C) of R query frames standardised by each database frame's statistics
    over the query frames seen so far, ``total`` and ``squares`` (R, C) the sums of the distances (and of their
    squares) over those ``seen`` (R, 1) frames, the current one included, seeded with :data:`SEED_FRAMES`
    pseudo-frames of the row's own mean and deviation over the database ``row_mean``, ``row_deviation`` (R, 1)
    (see :func:`diagonal_rank`); float64."""
    weight = seen + SEED_FRAMES
    mean = (total + SEED_FRAMES * row_mean) / weight
    variance = (squares + SEED_FRAMES * (row_mean * row_mean + row_deviation * row_deviation)) / weight - mean * mean
    return (distances - mean) / np.maximum(np.sqrt(np.maximum(variance, 0)), SCALE_FLOOR)


def seen_padding(bound: np.ndarray, row_deviation: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """The cost (R, 1) of a trajectory point outside the database for :func:`seen_standardised` rows: the bound
    (‖q‖ + max‖x‖)² over the smallest deviation the seed allows, σ · √(P / (n + P)), so it is at least every
    real database frame's standardised distance and a trajectory cut short never wins."""
    return bound / (np.maximum(row_deviation, SCALE_FLOOR) * np.sqrt(SEED_FRAMES / (seen + SEED_FRAMES)))


class SeenStatistics:
    """Offline :func:`seen_standardised` over :func:`diagonal_rank`'s blocks: query blocks come in the query
    stream's order (sequence after sequence, each in frame order) and each block's window frames are a run of
    consecutive stream positions, so running sums (width,) carried from one block to the next give every frame's
    seen-so-far sums exactly, whatever the block sizes."""

    def __init__(self, queries: np.ndarray, database: np.ndarray, query_order: SequenceOrder, padded: PaddedLayout,
                 max_memory: float) -> None:
        _, _, row_total, row_squares = distance_sums(queries, database, max_memory)
        self.row_mean, self.row_deviation = mean_and_deviation(row_total, row_squares, len(database))
        self.layout = DatabaseLayout.from_order(query_order)  # the stream: sequence after sequence, frame order
        self.real = np.zeros(padded.width, bool)
        self.real[padded.columns] = True
        self.carried = np.zeros((2, padded.width))  # sums over the stream up to the block's first position − 1
        self.next = np.zeros((2, padded.width))

    def begin(self, unique: np.ndarray, members: np.ndarray, valid: np.ndarray, next_first: int | None) -> None:
        """A query block: its window frames ``unique`` (F,) (sorted), ``members`` / ``valid`` (B, K); ``next_first``
        the next block's first stream position (None: the last block)."""
        positions = self.layout.position[members[valid]]
        self.first, last = int(positions.min()), int(positions.max())
        ordered = self.layout.order[self.first:last + 1]
        self.rows = np.searchsorted(unique, ordered)  # table rows in stream order
        self.seen = np.arange(self.first + 1, last + 2, dtype=np.float64)[:, None]
        self.keep = None if next_first is None or next_first == self.first else next_first - 1 - self.first
        self.row_stats = self.row_mean[ordered][:, None], self.row_deviation[ordered][:, None]

    def standardise(self, table: torch.Tensor, bound: torch.Tensor, lo: int, owned: slice) -> None:
        """Standardise the block's rows of ``table`` (F, C) (padded columns ``lo`` …) in place; ``bound`` (F,) the
        rows' padding bound; ``owned`` the padded columns whose running sums this column block carries on."""
        distances = table[torch.from_numpy(self.rows)].numpy().astype(np.float64)
        sums = np.stack([np.cumsum(distances, axis=0), np.cumsum(distances * distances, axis=0)])
        sums += self.carried[:, None, lo:lo + distances.shape[1]]
        out = seen_standardised(distances, sums[0], sums[1], self.seen, *self.row_stats)
        pad = seen_padding(bound.numpy()[self.rows][:, None].astype(np.float64), self.row_stats[1], self.seen)
        out = np.where(self.real[lo:lo + distances.shape[1]][None], out, pad)
        table[torch.from_numpy(self.rows)] = torch.from_numpy(out.astype(np.float32))
        if self.keep is not None:
            self.next[:, owned] = sums[:, self.keep, owned.start - lo:owned.stop - lo]

    def finish(self) -> None:
        """End of a query block: the next block starts from the carried sums."""
        if self.keep is not None:
            self.carried, self.next = self.next, self.carried


def diagonal_rank(queries: np.ndarray, database: np.ndarray, query_order: SequenceOrder,
                  database_order: SequenceOrder | None, config: SequenceConfig, k: int,
                  max_memory: float = MAX_MEMORY, standardised: bool = False, seen_only: bool = False
                  ) -> SequenceRanking:
    """The best ``k`` database frames (Q, k) of every query by the plain trajectory score over the whole database
    (see the module docstring), with their scores (Q, k), mean squared distance, lower is better.

    ``standardised``: each database frame's squared distances are first standardised by their mean and standard
    deviation over every query (:func:`query_statistics`; offline only: the whole query set is needed), so a
    database frame that is near every query (a hub: a stretch that looks like the query condition) gains nothing
    from being near; scores are then mean standardised distances (lower is better, may be negative).

    ``seen_only`` (sequence method diagonal-causal-standardised): the same over the query frames seen so far, so a
    frame-by-frame matcher (:class:`OnlineDiagonal`) gives the same ranking. The queries are streamed sequence
    after sequence (``query_order``'s sequences in turn, each in frame order) and the statistics run on across
    sequences (what the camera has seen so far); query frame t, n_t the frames streamed up to and including t,
    d_i(j) = ‖q_i − x_j‖², μ_t and σ_t the mean and standard deviation
    of d_t over the N database frames, P = :data:`SEED_FRAMES`:

        m_t(j) = (Σ_{i≤t} d_i(j) + P μ_t) / (n_t + P)
        s_t(j)² = (Σ_{i≤t} d_i(j)² + P (μ_t² + σ_t²)) / (n_t + P) − m_t(j)²
        z_t(j) = (d_t(j) − m_t(j)) / max(s_t(j), SCALE_FLOOR)

    (the statistics of the frames seen so far mixed with P pseudo-frames of the row's own statistics, so the
    first frames are stable); a trajectory point outside the database costs (‖q_t‖ + max‖x‖)² /
    (max(σ_t, SCALE_FLOOR) · √(P / (n_t + P))), at least every real frame's z_t. Each window frame keeps the z of
    its own arrival, and the score is the mean z along the best trajectory.

    ``queries`` (Q, D) and ``database`` (N, D) descriptors (a store's memory map works: it is read in blocks);
    ``database_order`` None: the database is one sequence in list order. Queries are scored in blocks of up to
    :data:`QUERY_BLOCK` against :data:`COLUMNS` padded database columns at a time (both smaller where
    ``max_memory`` bytes require; at least one query and one column), the top ``k`` merged across column blocks.

    Shape:
        - queries: ``(Q, D)``; database: ``(N, D)``
        - output: a :class:`SequenceRanking` with ``ranked`` and ``scores`` ``(Q, k)``

    Examples:
        >>> from netvlad.search import exact_search
        >>> route = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)  # a route's 30 descriptors
        >>> revisit = np.concatenate([route[10:14], route[25:26]])  # frames 10-13, then one that looks like 25
        >>> exact_search(route, revisit, k=1)[1].ravel()  # frame by frame, the last one is wrong
        array([10, 11, 12, 13, 25])
        >>> ranking = diagonal_rank(revisit, route, SequenceOrder.single(range(5)), None, SequenceConfig(length=5), k=1)
        >>> ranking.ranked.ravel(), ranking.lengths  # the trajectory of five frames finds 14
        (array([10, 11, 12, 13, 14]), array([1, 2, 3, 4, 5]))
    """
    if len(query_order) != len(queries):
        raise ValueError(f"sequence order of {len(query_order)} queries for {len(queries)} query descriptors")
    layout = DatabaseLayout.from_order(database_order, len(database))
    windows = window_matrix(query_order, config.before, config.after)
    reach = reach_of(config, windows.offsets)
    padded = PaddedLayout(layout, reach)
    norms = squared_norms(database)
    largest = float(np.sqrt(norms.max(initial=0.0)))
    k = min(int(k), len(layout))
    statistics = padded_statistics(queries, database, layout, padded, max_memory) if standardised else None
    seen = SeenStatistics(queries, database, query_order, padded, max_memory) if seen_only else None
    ranked = np.full((len(queries), k), -1, np.int64)
    scores = np.full((len(queries), k), np.inf)
    by_sequence = DatabaseLayout.from_order(query_order).order  # neighbouring windows share frames
    width = windows.members.shape[1]
    # a step holds about block + width distance rows and 3 · block score rows of columns + 2 · reach floats
    extra = 0 if seen is None else 10  # seen-so-far standardisation: float64 distances, two sums and the result
    block = max(1, min(QUERY_BLOCK, int(max_memory // ((16 + 4 * extra) * (COLUMNS + 2 * reach + width)))))
    columns = max(1, min(COLUMNS, int(max_memory // (4 * (4 * block + width + extra * (block + width)))) - 2 * reach))
    for a in range(0, len(queries), block):
        rows = by_sequence[a:a + block]
        members = windows.members[rows]
        unique, slots = np.unique(np.maximum(members, 0), return_inverse=True)
        if seen is not None:
            later = windows.members[by_sequence[a + block:a + 2 * block]]
            following = later[later >= 0]
            seen.begin(unique, members, windows.valid[rows],
                       int(seen.layout.position[following].min()) if len(following) else None)
        frames = torch.from_numpy(read_rows(queries, unique))
        bound = (torch.linalg.vector_norm(frames, dim=1) + largest).square_()
        best = RunningTop(len(rows), k)
        for c0 in range(0, padded.width, columns):
            first, last = np.searchsorted(padded.columns, [c0, c0 + columns])
            if first == last:  # padding only
                continue
            lo, hi = max(0, c0 - reach), min(padded.width, c0 + columns + reach)  # every shift stays inside
            table = padded_distances(frames, database, norms, layout, padded, bound, lo, hi)
            if statistics is not None:
                standardise_columns(table, *statistics, lo)
            if seen is not None:
                seen.standardise(table, bound, lo, slice(c0, min(c0 + columns, padded.width)))
            score = window_sums(table, slots.reshape(members.shape), windows.offsets[rows],
                                windows.valid[rows], config)
            local = padded.columns[first:last] - lo
            score = score[:, local[0]:local[-1] + 1] if _run(local) else score[:, torch.from_numpy(local)]
            best.add(score, int(first))
        if seen is not None:
            seen.finish()
        top, at = best.result()
        ranked[rows], scores[rows] = layout.order[at.numpy()], (top / window_counts(windows.valid[rows])).numpy()
    return SequenceRanking(ranked, scores, windows.valid.sum(axis=1), windows.shortened, windows.gaps)


class OnlineDiagonal:
    """The causal :func:`diagonal_rank` score fed one query frame at a time (a robot's camera), over the whole
    database: each frame's squared distances to the database are computed once when it arrives (one exact search's
    work) and kept for the L frames of its window; a frame then costs L · V row additions over the database.

    ``database`` (N, D) descriptors — or a growing array (loop closure: the stream's own earlier frames), of
    which the first ``count`` rows may be matched at each :meth:`push`; ``database_order`` its
    :class:`SequenceOrder` (None: one sequence in list order; a growing database must leave it None).
    ``seen_only``: the :func:`diagonal_rank` ``seen_only`` score: running sums (N,) of each database frame's
    distances and their squares over every frame pushed (:meth:`reset` keeps them: they are what the camera has
    seen so far), O(N) per frame, memory flat (two sums and the push it was added at per entry). On a growing
    database an entry's sums start empty when it becomes matchable (the first push whose ``count`` covers it, a_j)
    and take every frame pushed from then on, that one included: for query frame t (the n_t-th push),

        n_t(j) = n_t − a_j + 1,   Σ_t(j) = Σ_{a_j ≤ i ≤ t} d_i(j),   Σ²_t(j) = Σ_{a_j ≤ i ≤ t} d_i(j)²

    in :func:`diagonal_rank`'s formula in place of n_t and the sums over every frame, with μ_t, σ_t over the
    ``count`` rows matchable at t. A window frame i keeps the z of its own arrival; against an entry that became
    matchable after it (no frame seen yet: the seed pseudo-frames alone) z_i(j) = (d_i(j) − μ_i) /
    max(σ_i, SCALE_FLOOR) (a frame pushed while nothing was matchable takes μ_i, σ_i over the first rows that
    become matchable). A trajectory point outside the matchable rows costs (‖q_i‖ + max‖x‖)² /
    (max(σ_i, SCALE_FLOOR) · √(P / (n_i(0) + P))), max‖x‖ over the rows matchable now and n_i(0) the oldest
    entry's count at i (0 if none): at least every z of frame i. A fixed database is the case a_j = 1 for every
    entry. ``count`` may only grow.

    Examples:
        >>> route = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)  # a route's 30 descriptors
        >>> revisit = np.concatenate([route[10:14], route[25:26]])  # frames 10-13, then one that looks like 25
        >>> matcher = OnlineDiagonal(route, config=SequenceConfig(length=5))  # a robot's camera, frame by frame
        >>> [int(matcher.push(frame, k=1).ranked[0, 0]) for frame in revisit]
        [10, 11, 12, 13, 14]
    """

    def __init__(self, database: np.ndarray, database_order: SequenceOrder | None = None,
                 config: SequenceConfig | None = None, seen_only: bool = False) -> None:
        from netvlad.match.sequence import DEFAULT

        config = DEFAULT if config is None else config
        if config.centred:
            raise ValueError("OnlineDiagonal is causal: it cannot see future frames; use diagonal_rank for centred")
        self.database, self.order, self.config = database, database_order, config
        self.history: list[tuple[np.ndarray, int, np.ndarray]] = []  # (descriptor, frame, ‖q − x‖² of rows seen)
        self.seen_only = seen_only
        self.sums = np.zeros((2, 0))  # seen_only: Σ d, Σ d² per matchable row over the frames since it was added
        self.added = np.zeros(0, np.int64)  # seen_only: the push (1 …) at which each row became matchable
        self.pads: list[list] = []  # seen_only: each kept frame's [‖q‖, μ, σ (None: no row yet), n(0)]
        self.pushed = 0  # frames pushed, every sequence
        self.norms = np.zeros(0, np.float32)
        self._layouts: tuple = (None, None)  # ((count, reach), what :meth:`_layout` gives for them)

    def reset(self) -> None:
        """Forget the query frames of the window (a new query sequence starts); ``seen_only`` statistics stay."""
        self.history.clear()
        self.pads.clear()

    def _rows_until(self, count: int) -> None:
        """Extend every kept frame's squared distances (and the database norms) to the first ``count`` rows."""
        have = len(self.norms)
        if count <= have:
            return
        new = database_rows(self.database, np.arange(have, count))
        self.norms = np.concatenate([self.norms, torch.linalg.vector_norm(new, dim=1).square_().numpy()])
        for i, (descriptor, frame, row) in enumerate(self.history):
            q = torch.from_numpy(descriptor)
            extra = torch.addmv(q.square().sum() + torch.from_numpy(self.norms[have:count]), new, q,
                                alpha=-2).clamp_(min=0).numpy()
            if self.seen_only:  # rows added after frame i: its own seed statistics alone
                pad = self.pads[i]
                if pad[1] is None:
                    pad[1], pad[2] = float(extra.astype(np.float64).mean()), float(extra.astype(np.float64).std())
                extra = ((extra - pad[1]) / max(pad[2], SCALE_FLOOR)).astype(np.float32)
            self.history[i] = (descriptor, frame, np.concatenate([row, extra]))

    def _layout(self, count: int, reach: int) -> tuple[np.ndarray | None, int, slice | torch.Tensor]:
        """(the database row of each layout position, None where that is the row itself; the padded row's width;
        its real columns as a slice or an index) for the first ``count`` rows with ``reach`` padding columns:
        built once per (count, reach) for a database with a sequence order, and without any O(N) array for one in
        row order (a growing database)."""
        if self.order is None:  # one sequence in row order: padding, the rows, padding
            return None, count + 2 * reach, slice(reach, reach + count)
        if self._layouts[0] != (count, reach):
            layout = DatabaseLayout.from_order(self.order, count)
            padded = PaddedLayout(layout, reach)
            real = (slice(int(padded.columns[0]), int(padded.columns[-1]) + 1) if _run(padded.columns)
                    else torch.from_numpy(padded.columns))
            self._layouts = ((count, reach), (None if _run(layout.order) else layout.order, padded.width, real))
        return self._layouts[1]

    def _squared_distances(self, descriptor: np.ndarray) -> np.ndarray:
        """‖q − x‖² (N,) float32 of ``descriptor`` to the first ``len(self.norms)`` database rows: one pass over
        the rows (faiss's SIMD inner products straight from an in-memory float32 array, else numpy's BLAS per
        :data:`READ_ROWS` rows), no temporary of the database's size."""
        count = len(self.norms)
        out = np.empty(count, np.float32)
        database = self.database
        if count and type(database) is np.ndarray and database.dtype == np.float32 and database.flags.c_contiguous:
            import faiss  # heavy; only needed when matching

            q = np.ascontiguousarray(descriptor, np.float32)
            faiss.fvec_inner_products_ny(faiss.swig_ptr(out), faiss.swig_ptr(q), faiss.swig_ptr(database),
                                         q.shape[0], count)
        else:
            for a in range(0, count, READ_ROWS):
                block = database_rows(database, np.arange(a, min(a + READ_ROWS, count))).numpy()
                np.matmul(block, descriptor, out=out[a:a + len(block)])
        out *= -2
        out += np.dot(descriptor, descriptor) + self.norms
        return np.maximum(out, 0, out=out)

    def _standardised(self, descriptor: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The current frame's squared distances ``rows`` (count,) standardised over the frames seen since each row
        became matchable (:func:`seen_standardised`, see the class docstring), the running sums updated (rows new
        to this push start empty) and the frame's padding statistics kept."""
        d = rows.astype(np.float64)
        self.pushed += 1
        have = self.sums.shape[1]
        if len(d) > have:
            self.sums = np.concatenate([self.sums, np.zeros((2, len(d) - have))], axis=1)
            self.added = np.concatenate([self.added, np.full(len(d) - have, self.pushed, np.int64)])
        oldest = float(self.pushed - self.added[0] + 1) if len(d) else 0.0
        if not len(d):
            self.pads.append([float(np.linalg.norm(descriptor)), None, None, oldest])
            return d.astype(np.float32)
        self.sums[0] += d
        self.sums[1] += d * d
        seen = (self.pushed - self.added + 1).astype(np.float64)[None]  # frames per row, this one included
        row_mean, row_deviation = np.array([[d.mean()]]), np.array([[d.std()]])
        out = seen_standardised(d[None], self.sums[0][None], self.sums[1][None], seen, row_mean, row_deviation)
        self.pads.append([float(np.linalg.norm(descriptor)), float(d.mean()), float(d.std()), oldest])
        return out[0].astype(np.float32)

    def _padding(self, i: int, largest: float) -> float:
        """Kept frame ``i``'s cost outside the matchable rows (:func:`seen_padding`), ``largest`` max‖x‖ over them."""
        norm, _, deviation, oldest = self.pads[i]
        return float(seen_padding(np.array([[(norm + largest) ** 2]]), np.array([[deviation]]),
                                  np.array([[oldest]]))[0, 0])

    def push(self, descriptor: np.ndarray, frame: int | None = None, count: int | None = None,
             k: int = 10) -> SequenceRanking:
        """Add the current query frame (D,) with its frame number (None: the previous one + 1); ``count`` the
        database rows that may be matched (None: all). Returns its best ``k`` database frames as a one-row
        :class:`SequenceRanking` (empty ids −1 and scores inf when nothing may be matched)."""
        descriptor = np.asarray(descriptor, np.float32).reshape(-1)
        if descriptor.shape[0] != self.database.shape[1]:
            raise ValueError(f"query descriptor has {descriptor.shape[0]} dimensions, the database "
                             f"{self.database.shape[1]}")
        count = len(self.database) if count is None else int(count)
        if self.order is not None and count != len(self.database):
            raise ValueError("a database with a sequence order is fixed: count must be None")
        if self.seen_only and count < self.sums.shape[1]:
            raise ValueError(f"seen_only keeps running statistics per matchable row: count may only grow "
                             f"({count} after {self.sums.shape[1]})")
        frame = (self.history[-1][1] + 1 if self.history else 0) if frame is None else int(frame)
        self._rows_until(count)
        rows = self._squared_distances(descriptor)
        if self.seen_only:
            rows = self._standardised(descriptor, rows)
        self.history = [*self.history, (descriptor, frame, rows)][-self.config.length:]
        self.pads = self.pads[-self.config.length:]
        frames = np.array([h[1] for h in self.history], np.int64)
        offsets = (frames - frame)[None]
        length = np.array([len(frames)])
        shortened, gap = length < self.config.length, np.array([bool((np.diff(frames) != 1).any())])
        if count == 0:
            return SequenceRanking(np.full((1, k), -1, np.int64), np.full((1, k), np.inf), length, shortened, gap)
        order, width, real = self._layout(count, reach_of(self.config, offsets))
        largest = float(np.sqrt(self.norms[:count].max()))
        table = torch.empty((len(self.history), width))
        for i, (d, _, row) in enumerate(self.history):
            table[i] = self._padding(i, largest) if self.seen_only else (float(np.linalg.norm(d)) + largest) ** 2
            table[i, real] = torch.from_numpy(row[:count] if order is None else row[order])
        score = window_sums(table, np.arange(len(frames))[None], offsets, np.ones(offsets.shape, bool),
                            self.config)[:, real] / len(frames)
        top, at = torch.topk(score, min(k, count), dim=1, largest=False, sorted=True)
        ids, scores = np.full((1, k), -1, np.int64), np.full((1, k), np.inf)
        at = at.numpy() if order is None else order[at.numpy()]
        ids[:, :top.shape[1]], scores[:, :top.shape[1]] = at, top.numpy()
        return SequenceRanking(ids, scores, length, shortened, gap)
