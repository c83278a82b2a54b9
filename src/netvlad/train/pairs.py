"""Squared L2 distances of chosen (query, database row) pairs, in bounded memory, without a Q × N matrix.

Mining needs about a thousand distances per query (its positives, sampled negatives and previous hard ones), not
the distances to all N cached rows. A block of queries gathers the sorted union of the rows it needs in chunks,
casts each chunk to float32 and computes ‖q‖² + ‖x‖² − 2 q·x by one matrix product, keeping only the needed
entries. Where the union is most of the database (small N) this is the full product cut in pieces; where it is
sparse (large N) few queries share a block, so the product wastes little on rows a query does not need.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from netvlad.errors import BadInputError
from netvlad.eval.search import as_float32, release_pages

logger = logging.getLogger(__name__)

MIB = 2**20
MINING_MEMORY = 256 * MIB  # working set of one pass (bytes): independent of the number of database rows
MAX_QUERY_BLOCK = 256  # queries per block at most: beyond it the product's extra rows outweigh fewer gathers
MAX_ROW_CHUNK = 16384  # rows per chunk at most: larger chunks gain nothing and hold memory longer
# A gathered row costs about as much as this many query × row dot products (measured on a 2-core x86: reading a
# scattered float16 row and casting it vs BLAS throughput); it sets how many queries should share a block.
GATHER_COST = 32


@dataclass(frozen=True)
class PairPlan:
    """How the pairs are cut: ``query_block`` queries × ``row_chunk`` gathered rows at a time, ``bytes`` at peak."""

    query_block: int
    row_chunk: int
    bytes: int


def _step_bytes(query_block: int, row_chunk: int, dim: int, itemsize: int) -> int:
    """Float32 queries, the gathered chunk (as stored and as float32), its mapped pages and the block's product."""
    return query_block * dim * 4 + row_chunk * (dim * (4 + 2 * itemsize) + 4096) + query_block * row_chunk * 4


def max_block(dim: int, itemsize: int, max_memory: int) -> int:
    """The most queries one block may hold within ``max_memory`` bytes: 1/8 of it for the float32 queries."""
    minimum = _step_bytes(1, 1, dim, itemsize)
    if max_memory < minimum:
        raise BadInputError(f"a mining memory budget of {max_memory / MIB:.1f} MiB is too small for {dim}-D "
                            f"descriptors: one query and one row need {minimum / MIB:.1f} MiB; raise it")
    return int(max(1, min(MAX_QUERY_BLOCK, max_memory // 8 // (dim * 4))))


def _block_cost(rows: Sequence[np.ndarray], block: int) -> float:
    """Estimated cost per query of blocks of ``block`` queries: (gathers + products) per distinct row needed."""
    sizes = [len(np.unique(np.concatenate(rows[s:s + block]))) for s in range(0, len(rows), block)]
    return float(np.mean(sizes)) * (GATHER_COST + block) / block


def plan_pairs(rows: Sequence[np.ndarray], dim: int, itemsize: int, max_memory: int = MINING_MEMORY) -> PairPlan:
    """Block sizes for :func:`pair_distances`: the query block of least estimated cost, chunks filling the budget.

    The cost is estimated on the first ``MAX_QUERY_BLOCK`` queries' rows (``rows[i]``: the rows query ``i`` needs).
    """
    largest = max_block(dim, itemsize, max_memory)
    sample = [np.asarray(r) for r in rows[:largest]] or [np.zeros(0, np.int64)]
    blocks = sorted({min(largest, b) for b in (1, 2, 4, 8, 16, 32, 64, 128, 256)})
    block = min(blocks, key=lambda b: _block_cost(sample, b))
    spare = max_memory - _step_bytes(block, 0, dim, itemsize)
    chunk = int(max(1, min(MAX_ROW_CHUNK, spare // (dim * (4 + 2 * itemsize) + 4096 + 4 * block))))
    return PairPlan(block, chunk, _step_bytes(block, chunk, dim, itemsize))


def _gather(database: np.ndarray, rows: np.ndarray, native: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``database[rows]`` ``(c, dim)`` as float32 in ``out`` (rows sorted); a memmap's pages are released after."""
    first, last = int(rows[0]), int(rows[-1]) + 1
    span = database[first:last]
    if last - first == len(rows):  # a dense run: cast straight from the (mapped) rows
        chunk = as_float32(span, out)
    elif database.dtype == np.float32:
        chunk = np.take(database, rows, axis=0, out=out[:len(rows)])
    else:
        chunk = as_float32(np.take(database, rows, axis=0, out=native[:len(rows)]), out)
    release_pages(span)
    return chunk


def pair_distances(database: np.ndarray, queries: np.ndarray, rows: Sequence[np.ndarray],
                   max_memory: int = MINING_MEMORY, plan: PairPlan | None = None) -> list[np.ndarray]:
    """Squared L2 distances of query ``i`` to database rows ``rows[i]``: a list of ``(len(rows[i]),)`` float32.

    ``database`` ``(M, dim)`` and ``queries`` ``(Q, dim)`` float32 or float16, in memory or memory-mapped (only
    the needed rows are read); working memory stays within ``max_memory`` bytes (or an explicit ``plan``).
    """
    if database.ndim != 2 or queries.ndim != 2 or database.shape[1] != queries.shape[1] or len(rows) != len(queries):
        raise ValueError(f"database {database.shape}, queries {queries.shape} and {len(rows)} row lists disagree")
    dim, lengths = database.shape[1], np.array([len(r) for r in rows], dtype=np.int64)
    plan = plan or plan_pairs(rows, dim, database.dtype.itemsize, max_memory)
    logger.debug("distances of %d pairs: %d queries × %d rows per step", lengths.sum(), plan.query_block,
                 plan.row_chunk)
    query_buffer = np.empty((min(plan.query_block, len(queries)), dim), dtype=np.float32)
    out32 = np.empty((plan.row_chunk, dim), dtype=np.float32)
    native = np.empty((plan.row_chunk, dim), dtype=database.dtype) if database.dtype != np.float32 else out32
    values = []
    for q0 in range(0, len(queries), plan.query_block):
        block = rows[q0:q0 + plan.query_block]
        q = torch.from_numpy(as_float32(queries[q0:q0 + len(block)], query_buffer))
        release_pages(queries[q0:q0 + len(block)])
        values.append(_block_distances(database, q, block, plan.row_chunk, native, out32))
    flat = np.concatenate(values) if values else np.zeros(0, np.float32)
    return np.split(flat, np.cumsum(lengths)[:-1]) if len(rows) else []


def _block_distances(database: np.ndarray, q: torch.Tensor, rows: Sequence[np.ndarray], chunk: int,
                     native: np.ndarray, out32: np.ndarray) -> np.ndarray:
    """Distances of one query block ``q`` ``(B, dim)`` to its ``rows``, concatenated in query order ``(Σ,)``."""
    pair_query = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    pair_row = np.concatenate(rows).astype(np.int64, copy=False) if len(rows) else np.zeros(0, np.int64)
    union, pair_union = np.unique(pair_row, return_inverse=True)
    order = np.argsort(pair_union, kind="stable")  # pairs grouped by union position: one slice per chunk
    sorted_union = pair_union[order]
    q_sq = torch.einsum("ij,ij->i", q, q)  # row by row: no (B, dim) temporary
    out = np.empty(len(pair_row), dtype=np.float32)
    for u0 in range(0, len(union), chunk):
        x = torch.from_numpy(_gather(database, union[u0:u0 + chunk], native, out32))
        lo, hi = np.searchsorted(sorted_union, [u0, u0 + len(x)])
        pick = order[lo:hi]
        qi, xi = torch.from_numpy(pair_query[pick]), torch.from_numpy(sorted_union[lo:hi] - u0)
        dots = q @ x.T  # (B, c): the block's product with the chunk
        out[pick] = (q_sq[qi] + torch.einsum("ij,ij->i", x, x)[xi] - 2.0 * dots[qi, xi]).clamp_(min=0.0).numpy()
    return out
