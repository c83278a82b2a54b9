"""Exact L2 search over a database larger than RAM: database chunks × query blocks, top-k merged across chunks.

The database may be a ``numpy.memmap`` (float32 or float16, e.g. a :class:`DescriptorStore`'s matrix). Each
chunk is cast to float32 on its own and searched with faiss's exact kernel (``faiss.knn``, the same BLAS code as
``IndexFlatL2``); faiss's result heaps keep each query's best ``k`` across chunks. After a chunk is searched its
pages are dropped from the process's resident set (they stay in the kernel's page cache), so peak memory is set
by the budget, not by the database: no float32 copy of the whole database ever exists.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from netvlad.errors import BadInputError

logger = logging.getLogger(__name__)

GIB = 1024**3
MIN_QUERY_BLOCK = 16  # queries per block below which the database is re-read too often to be worth running
MIN_DB_CHUNK = 256  # database rows per chunk below which BLAS runs far from its speed
MAX_DB_CHUNK = 16384  # larger chunks gain nothing (faiss tiles by 1024 rows) and only hold memory longer
FAISS_WORKSPACE = 64 * 1024**2  # faiss's own distance tiles (4096 × 1024 float32 per thread) and interpreter slack
RERANK_BYTES = 256 * 1024**2  # re-ranking's (queries × candidates × dim) float32 rows per block
MAX_RERANK_BLOCK = 64
GATHER_BATCH = 1024  # rows of a memory map gathered between releases of its pages (~112 KiB mapped per row)
_MADV_DONTNEED = 4


@dataclass(frozen=True)
class SearchPlan:
    """How a search is cut: ``query_block`` queries × ``db_chunk`` database rows at a time, ``bytes`` at peak."""

    query_block: int
    db_chunk: int
    bytes: int

    def describe(self) -> str:
        return f"{self.query_block} queries × {self.db_chunk} database rows per step (≈{self.bytes / GIB:.2f} GiB)"


def default_max_memory() -> int:
    """Half the memory the machine has available now (bytes), at least 0.5 GiB: the default ``--max-memory``."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 8 * GIB
    return max(GIB // 2, available // 2)


def _step_bytes(query_block: int, db_chunk: int, dim: int, k: int, itemsize: int) -> int:
    """Working memory of one step: float32 queries and chunk, the chunk's mapped pages, heaps and chunk results."""
    return (query_block * dim * 4 + db_chunk * dim * (4 + itemsize) + query_block * k * 12 * 3
            + FAISS_WORKSPACE)


def plan_search(num_queries: int, num_database: int, dim: int, k: int, max_memory: float | None = None,
                itemsize: int = 4) -> SearchPlan:
    """Block sizes that fit ``max_memory`` bytes (default: :func:`default_max_memory`); too small a budget is refused.

    Queries come in as few blocks as possible (each block reads the whole database once); the database chunk takes
    what the query block leaves, up to :data:`MAX_DB_CHUNK` rows.
    """
    budget = int(max_memory if max_memory is not None else default_max_memory())
    min_q, min_db = max(1, min(num_queries, MIN_QUERY_BLOCK)), max(1, min(num_database, MIN_DB_CHUNK))
    minimum = _step_bytes(min_q, min_db, dim, k, itemsize)
    if budget < minimum:
        raise BadInputError(f"a memory budget of {budget / GIB:.3f} GiB is too small to search {dim}-D descriptors: "
                            f"one block of {min_q} queries × {min_db} database rows needs at least "
                            f"{minimum / GIB:.3f} GiB; raise max_memory", hint=f"use --max-memory {minimum / GIB:.3f} "
                            "or more")
    query_block = max(min_q, min(num_queries, (budget // 4) // max(1, dim * 4 + k * 36)))
    spare = budget - _step_bytes(query_block, 0, dim, k, itemsize)
    db_chunk = int(min(num_database, MAX_DB_CHUNK, max(min_db, spare // (dim * (4 + itemsize)))))
    return SearchPlan(int(query_block), db_chunk, _step_bytes(query_block, db_chunk, dim, k, itemsize))


def _mapped(array: np.ndarray) -> bool:
    """True when ``array`` is (a view of) a shared file mapping whose pages may be dropped and re-read."""
    base = array
    while base is not None:
        if isinstance(base, np.memmap):
            return base.mode in ("r", "r+", "readonly", "readwrite")
        if isinstance(base, mmap.mmap):
            return False  # mapping flags unknown (could be private): keep its pages
        base = getattr(base, "base", None)
    return False


def release_pages(view: np.ndarray) -> None:
    """Drop the pages of a memory-mapped slice from this process's resident memory (Linux; a no-op elsewhere)."""
    if not sys.platform.startswith("linux") or view.nbytes == 0 or not _mapped(view):
        return
    start = view.ctypes.data
    aligned = start - start % mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise(ctypes.c_void_p(aligned), ctypes.c_size_t(start + view.nbytes - aligned), _MADV_DONTNEED)


def as_float32(rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``rows`` cast into the float32 buffer ``out`` (torch's vectorised cast: ~10× numpy's for float16)."""
    import torch  # the package depends on torch already; only its cast is used here

    out = out[:len(rows)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a read-only memmap is only read
        torch.from_numpy(out).copy_(torch.from_numpy(np.asarray(rows)))
    return out


def _file_rows(array: np.ndarray) -> tuple[str, int] | None:
    """(file, byte offset of row 0) of a whole-file ``numpy.memmap`` (e.g. ``np.load(mmap_mode="r")``), else None."""
    if isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.flags.c_contiguous \
            and array.filename:
        return str(array.filename), int(array.offset)
    return None


def read_rows(database: np.ndarray, rows: np.ndarray, out: np.ndarray | None = None,
                batch: int = GATHER_BATCH) -> np.ndarray:
    """Rows ``rows`` of ``database`` as float32 ``(len(rows), dim)`` (into ``out``; sorted rows read forwards).

    A whole-file memory map (a store's matrix) is read with one ``pread`` per row, ``batch`` rows at a time: no page
    of it is mapped into the process (touching one mapped row maps ~112 KiB of fault-around up to a ~2 MiB
    page-cache folio, and each fault costs more than the read). Other memory maps are gathered ``batch`` rows at a
    time with their pages released after each batch.
    """
    out = np.empty((len(rows), database.shape[1]), dtype=np.float32) if out is None else out[:len(rows)]
    source, mapped = _file_rows(database), _mapped(database)
    step = batch if source or mapped else max(1, len(rows))
    raw = np.empty((min(step, len(rows)), database.shape[1]), dtype=database.dtype) if source else None
    for start in range(0, len(rows), step):
        part = rows[start:start + step]
        if source:
            as_float32(_pread_rows(*source, database, part, raw), out[start:start + step])
        else:
            as_float32(database[part], out[start:start + step])
            if mapped:
                release_pages(database)
    return out


def _pread_rows(path: str, offset: int, database: np.ndarray, rows: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """``database[rows]`` read from its file with ``os.preadv`` (no mapping) into ``buffer`` (≥ len(rows) rows)."""
    buffer = buffer[:len(rows)]
    row_bytes = buffer[0].nbytes if len(rows) else 0
    view = memoryview(buffer).cast("B")
    fd = os.open(path, os.O_RDONLY)
    try:
        for i, row in enumerate(np.asarray(rows, dtype=np.int64).tolist()):
            if not 0 <= row < len(database):
                raise IndexError(f"row {row} is outside {path}'s {len(database)} rows")
            got = os.preadv(fd, [view[i * row_bytes:(i + 1) * row_bytes]], offset + row * row_bytes)
            if got != row_bytes:
                raise BadInputError(f"{path}: ends inside row {row} (truncated?); extract the descriptors again",
                                    path=path)
    finally:
        os.close(fd)
    return buffer


def iter_chunks(database: np.ndarray, chunk: int, valid: np.ndarray | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (row ids ``(c,)`` int64, float32 rows ``(c, dim)``) of ``database`` in order, skipping invalid rows.

    The float32 rows live in one buffer reused by the next chunk (copy them to keep them), or, for a database already
    float32 in memory, are its own rows (read them only); the source pages of a memory-mapped database are released
    after each chunk.
    """
    # an in-memory float32 database is searched where it lies: a copy per chunk would cost as much as the search
    in_place = database.dtype == np.float32 and database.flags.c_contiguous and not _mapped(database)
    buffer = None if in_place else np.empty((min(chunk, len(database)), database.shape[1]), dtype=np.float32)
    for start in range(0, len(database), chunk):
        stop = min(start + chunk, len(database))
        view = database[start:stop]
        ids = np.arange(start, stop, dtype=np.int64)
        if valid is not None and not valid[start:stop].all():
            keep = np.asarray(valid[start:stop], dtype=bool)
            rows, ids = (view[keep] if in_place else as_float32(view[keep], buffer)), ids[keep]
        else:
            rows = view if in_place else as_float32(view, buffer)
        release_pages(view)
        if len(ids):
            yield ids, rows


def exact_search(database: np.ndarray, queries: np.ndarray, k: int, *, valid: np.ndarray | None = None,
                 max_memory: float | None = None, plan: SearchPlan | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k``: -> (L2 distances ``(Q, k)`` float32 ascending, database row ids ``(Q, k)`` int64).

    ``database`` ``(N, dim)`` float32|float16 (a memmap is read chunk by chunk), ``queries`` ``(Q, dim)``,
    ``valid`` an optional ``(N,)`` mask of rows to search, ``max_memory`` the working-memory budget in bytes
    (or an explicit ``plan`` of block sizes).
    ``k`` is clamped to the number of searchable rows; rows beyond it are −1 with distance inf.

    Shape:
        - database: ``(N, dim)``; queries: ``(Q, dim)``
        - output: distances ``(Q, k)`` float32 and ids ``(Q, k)`` int64

    Examples:
        >>> database = np.eye(4, dtype=np.float32)
        >>> queries = np.array([[0.9, 0.1, 0, 0], [0, 0, 0.2, 0.8]], dtype=np.float32)
        >>> distances, ids = exact_search(database, queries, k=2)
        >>> ids
        array([[0, 1],
               [3, 2]])
        >>> distances.round(4)
        array([[0.1414, 1.2728],
               [0.2828, 1.1314]], dtype=float32)
        >>> exact_search(database, queries, k=2, valid=np.array([False, True, True, True]))[1]  # row 0 left out
        array([[1, 2],
               [3, 2]])
    """
    import faiss  # heavy; only needed when searching

    queries = np.asarray(queries)
    if database.ndim != 2 or queries.ndim != 2 or database.shape[1] != queries.shape[1]:
        raise BadInputError(f"database descriptors {database.shape} and query descriptors {queries.shape} must be "
                            "(N, dim) and (Q, dim) with the same dim (extracted with another model or whitening?)")
    num_valid = int(np.count_nonzero(valid)) if valid is not None else len(database)
    k = max(1, min(int(k), num_valid)) if num_valid else int(k)
    out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
    out_i = np.full((len(queries), k), -1, dtype=np.int64)
    if not len(queries) or not num_valid:
        return out_d, out_i
    plan = plan or plan_search(len(queries), len(database), database.shape[1], k, max_memory,
                               database.dtype.itemsize)
    logger.debug("exact search of %d queries over %d rows: %s", len(queries), num_valid, plan.describe())
    for q0 in range(0, len(queries), plan.query_block):
        block = np.ascontiguousarray(queries[q0:q0 + plan.query_block], dtype=np.float32)
        heap = faiss.ResultHeap(len(block), k)
        for ids, rows in iter_chunks(database, plan.db_chunk, valid):
            squared, found = faiss.knn(block, rows, min(k, len(rows)))
            heap.add_result(squared, np.where(found >= 0, ids[np.maximum(found, 0)], -1))
        heap.finalize()
        out_d[q0:q0 + len(block)] = np.sqrt(np.maximum(heap.D, 0))
        out_i[q0:q0 + len(block)] = heap.I
    out_d[out_i < 0] = np.inf
    return out_d, out_i


def rerank(database: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int,
           block: int | None = None, verify=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact re-ranking of approximate candidates: -> (L2 distances ``(Q, k)`` ascending, row ids ``(Q, k)``).

    ``candidates`` ``(Q, C)`` are database row ids (−1 for none), e.g. an IVF-PQ top-C; their descriptors are read
    from ``database`` (a memmap is fine: only those rows are touched), ``block`` queries at a time (default: as many
    as keep the block's ``(block, C, dim)`` float32 rows within :data:`RERANK_BYTES`), each query's rows side by side
    so that its distances are one pass over them. Ties keep the candidates' order. ``verify(rows, vectors)``, when
    given (a store's :meth:`verify_rows`), checks the rows read before they are used.
    """
    queries = np.asarray(queries, dtype=np.float32)
    candidates = np.asarray(candidates, dtype=np.int64)
    count, dim = candidates.shape[1], queries.shape[1]
    out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
    out_i = np.full((len(queries), k), -1, dtype=np.int64)
    block = block or max(1, min(MAX_RERANK_BLOCK, RERANK_BYTES // max(1, count * dim * 4)))
    # one buffer for every block: fresh pages cost a fault each (~4.5 µs here), more than the reads themselves
    buffer = np.empty((min(block, len(queries)) * count, dim), dtype=np.float32)
    for q0 in range(0, len(queries), block):
        cand = candidates[q0:q0 + block]
        found = cand >= 0
        vectors = read_rows(database, np.where(found, cand, 0).ravel(), buffer).reshape(*cand.shape, dim)
        if verify is not None:
            verify(cand[found], vectors[found])
        vectors -= queries[q0:q0 + len(cand), None]  # in place: the differences
        dist = np.sqrt(np.einsum("qcd,qcd->qc", vectors, vectors))
        dist[~found] = np.inf
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        out_d[q0:q0 + len(cand), :order.shape[1]] = np.take_along_axis(dist, order, 1)
        out_i[q0:q0 + len(cand), :order.shape[1]] = np.where(
            np.isinf(out_d[q0:q0 + len(cand), :order.shape[1]]), -1, np.take_along_axis(cand, order, 1))
    return out_d, out_i
