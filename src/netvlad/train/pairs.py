"""Squared L2 distances of chosen (query, database row) pairs, in bounded memory, without a Q × N matrix.

Mining needs about a thousand distances per query (its positives, sampled negatives and previous hard ones), not
the distances to all N cached rows. A block of queries streams the database once, in row chunks read in order
(a memory map's pages are dropped after each chunk) and cast to float32, skipping chunks no query needs. Within a
chunk, ‖q‖² + ‖x‖² − 2 q·x is computed by matrix products over only as much as pays: the whole chunk against all
the block's queries where most of it is needed (small N: the full product cut in pieces), or, where the needed
rows are sparse (large N), small groups of queries against the union of the rows they need, gathered.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from netvlad.errors import BadInputError
from netvlad.search.exact import as_float32, release_pages
from netvlad.threads import torch_threads

logger = logging.getLogger(__name__)

MIB = 2**20
MINING_MEMORY = 256 * MIB  # working set of one pass (bytes): independent of the number of database rows
MAX_QUERY_BLOCK = 1024  # queries held at once at most (each block reads the database once)
MAX_ROW_CHUNK = 16384  # rows per chunk at most: larger chunks gain nothing and hold memory longer
# Cost model for splitting a chunk's product, in units of one query × row dot product: gathering a row costs about
# this many (on a 2-core x86: copying a 1024-D float32 row ≈ 0.7 µs; one dot product in a GEMM ≈ 25 ns) ...
GATHER_COST = 32
# ... and one product call about this many at dim 1024 (Python and BLAS call overhead, ~50 µs), scaled by 1024/dim.
CALL_COST_1024 = 2048


@dataclass(frozen=True)
class PairPlan:
    """How the pairs are cut: ``query_block`` queries × ``row_chunk`` database rows at a time, ``bytes`` at peak."""

    query_block: int
    row_chunk: int
    bytes: int


def _step_bytes(query_block: int, row_chunk: int, dim: int, itemsize: int) -> int:
    """Float32 queries; the chunk as float32, its mapped pages and a gathered part (≤ half); the block's product."""
    return query_block * dim * 4 + row_chunk * dim * (4 + itemsize + 2) + query_block * row_chunk * 4


def plan_pairs(num_queries: int, num_rows: int, dim: int, itemsize: int, max_memory: int = MINING_MEMORY) -> PairPlan:
    """Block sizes for :func:`pair_distances` within ``max_memory`` bytes: a quarter for the float32 queries, the
    rest for the database chunk; too small a budget is refused with the minimum."""
    minimum = _step_bytes(1, 1, dim, itemsize)
    if max_memory < minimum:
        raise BadInputError(f"a mining memory budget of {max_memory / MIB:.2f} MiB is too small for {dim}-D "
                            f"descriptors: one query and one row need {minimum / MIB:.2f} MiB; raise it")
    query_block = int(max(1, min(num_queries, MAX_QUERY_BLOCK, max_memory // 4 // (dim * 4))))
    spare = max_memory - query_block * dim * 4
    row_chunk = int(max(1, min(num_rows, MAX_ROW_CHUNK, spare // (dim * (6 + itemsize) + 4 * query_block))))
    return PairPlan(query_block, row_chunk, _step_bytes(query_block, row_chunk, dim, itemsize))


def group_size(num_pairs: int, num_queries: int, num_rows: int, dim: int) -> int:
    """Queries per product within one chunk, of least estimated cost (``num_queries``: the whole chunk at once).

    ``num_pairs`` needed among ``num_queries`` × ``num_rows``; a group of ``g`` queries needs the union of about
    ``num_rows · (1 − (1 − k/num_rows)^g)`` rows (``k`` = pairs per query), gathered and multiplied by ``g``.
    """
    call = CALL_COST_1024 * 1024 / dim
    best, best_cost = num_queries, num_rows + call / num_queries  # per query: the whole chunk, no gather
    share = min(1.0, num_pairs / num_queries / num_rows)
    for g in (2**i for i in range(int(math.log2(max(1, num_queries))) + 1)):
        if g >= num_queries:
            break
        union = num_rows * -math.expm1(g * math.log1p(-share)) if share < 1 else num_rows
        cost = (union * (GATHER_COST + g) + call) / g
        if cost < best_cost:
            best, best_cost = g, cost
    return best


def pair_distances(database: np.ndarray, queries: np.ndarray, rows: Sequence[np.ndarray],
                   max_memory: int = MINING_MEMORY, plan: PairPlan | None = None) -> list[np.ndarray]:
    """Squared L2 distances of query ``i`` to database rows ``rows[i]``: a list of ``(len(rows[i]),)`` float32.

    ``database`` ``(M, dim)`` and ``queries`` ``(Q, dim)`` float32 or float16, in memory or memory-mapped (read
    in order, once per block of queries; chunks no query needs are skipped). Working memory stays within
    ``max_memory`` bytes (or an explicit ``plan``), plus the pair lists (about 28 bytes per pair).

    Examples:
        >>> database = np.array([[1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
        >>> queries = np.array([[1, 0], [0, 1]], dtype=np.float32)
        >>> pair_distances(database, queries, [np.array([0, 2]), np.array([1])])
        [array([0., 2.], dtype=float32), array([0.79999995], dtype=float32)]
    """
    if database.ndim != 2 or queries.ndim != 2 or database.shape[1] != queries.shape[1] or len(rows) != len(queries):
        raise ValueError(f"database {database.shape}, queries {queries.shape} and {len(rows)} row lists disagree")
    dim, lengths = database.shape[1], np.array([len(r) for r in rows], dtype=np.int64)
    pair_row = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if len(rows) else np.zeros(0, np.int64)
    if len(pair_row) and (pair_row.min() < 0 or pair_row.max() >= len(database)):
        raise ValueError(f"rows must lie in [0, {len(database)}): got {pair_row.min()}..{pair_row.max()}")
    plan = plan or plan_pairs(len(queries), len(database), dim, database.dtype.itemsize, max_memory)
    logger.debug("distances of %d pairs: %d queries × %d rows per step", len(pair_row), plan.query_block,
                 plan.row_chunk)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    buffers = _Buffers(plan, dim)
    out = np.empty(len(pair_row), dtype=np.float32)
    for q0 in range(0, len(queries), plan.query_block):
        q1 = min(q0 + plan.query_block, len(queries))
        p0, p1 = offsets[q0], offsets[q1]  # the block's pairs, in query order
        block_query = np.repeat(np.arange(q1 - q0), lengths[q0:q1])
        order = np.argsort(pair_row[p0:p1], kind="stable")  # the block's pairs by row: one slice per chunk
        sorted_rows = pair_row[p0:p1][order]
        q = torch.from_numpy(as_float32(queries[q0:q1], buffers.queries))
        release_pages(queries[q0:q1])
        q_sq = torch.linalg.vector_norm(q, dim=1).square_()
        for r0 in range(0, len(database), plan.row_chunk):
            lo, hi = np.searchsorted(sorted_rows, [r0, r0 + plan.row_chunk])
            if lo == hi:
                continue  # no query of the block needs these rows: not read
            view = database[r0:r0 + plan.row_chunk]
            x = torch.from_numpy(as_float32(view, buffers.chunk))
            release_pages(view)
            pick = order[lo:hi]
            out[p0 + pick] = _chunk_distances(q, q_sq, x, block_query[pick], sorted_rows[lo:hi] - r0, buffers)
    return np.split(out, offsets[1:-1]) if len(rows) else []


class _Buffers:
    """Reused float32 buffers (fresh ones would be page-faulted in at every chunk)."""

    def __init__(self, plan: PairPlan, dim: int) -> None:
        self.queries = np.empty((plan.query_block, dim), dtype=np.float32)
        self.chunk = np.empty((plan.row_chunk, dim), dtype=np.float32)
        self.gathered = torch.empty(((plan.row_chunk + 1) // 2, dim))
        self.product = torch.empty(plan.query_block * plan.row_chunk)

    def product_of(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``q @ x.T`` ``(B, c)`` into the reused buffer."""
        return torch.mm(q, x.T, out=self.product[:len(q) * len(x)].view(len(q), len(x)))


def _chunk_distances(q: torch.Tensor, q_sq: torch.Tensor, x: torch.Tensor, pair_query: np.ndarray,
                     pair_row: np.ndarray, buffers: _Buffers) -> np.ndarray:
    """Distances of pairs (``pair_query`` into ``q`` ``(B, dim)``, ``pair_row`` into the chunk ``x`` ``(c, dim)``)."""
    x_sq = torch.linalg.vector_norm(x, dim=1).square_()
    group = group_size(len(pair_query), len(q), len(x), x.shape[1])
    whole = group >= len(q)  # one product of all the block's queries with the whole chunk
    order = np.argsort(pair_query // group, kind="stable")  # pairs by query group
    bounds = np.searchsorted(pair_query[order] // group, np.arange(-(-len(q) // group) + 1))
    out = torch.empty(len(pair_query))
    # many small gathers and products on one thread: with several, every call waits until all its threads are
    # scheduled, which on a busy machine costs milliseconds per call (measured ~10 ms on 2 shared cores)
    with nullcontext() if whole else torch_threads(1):
        for g, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            if lo == hi:
                continue
            pick, rows = order[lo:hi], pair_row[order[lo:hi]]
            xs, column = x, rows
            if not whole:
                union, inverse = np.unique(rows, return_inverse=True)
                if 2 * len(union) <= len(x):  # gather the rows the group needs (else: most of the chunk)
                    xs = torch.index_select(x, 0, torch.from_numpy(union), out=buffers.gathered[:len(union)])
                    column = inverse
            qi = torch.from_numpy(pair_query[pick] - g * group)
            dots = buffers.product_of(q[g * group:(g + 1) * group], xs)[qi, torch.from_numpy(column)]
            out[torch.from_numpy(pick)] = q_sq[qi + g * group] + x_sq[torch.from_numpy(rows)] - 2.0 * dots
    return out.clamp_(min=0.0).numpy()
