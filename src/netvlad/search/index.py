"""faiss indexes over global descriptors: exact (flat L2) or approximate (IVF-PQ, OPQ + IVF-PQ, HNSW).

Approximate indexes are built from a database that need not fit in memory (a memory-mapped store): they are
trained on a random sample of rows and filled chunk by chunk. The device is the caller's choice: CPU unless
``IndexConfig.use_gpu`` asks for a GPU (the CLI sets it from ``--device``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from netvlad.errors import BadInputError
from netvlad.limits import COUNT, NON_NEGATIVE_INT
from netvlad.search.exact import iter_chunks, plan_search, read_rows, rerank
from netvlad.search.index_kinds import (
    FAST_SCAN_BITS,
    INDEX_KINDS,
    MIN_PROBES,
    PROBE_VECTORS,
    approximate_kinds,
    kind_of,
)
from netvlad.search.opq import train_opq

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexConfig:
    """Which faiss index to build: ``kind`` is a key of :data:`INDEX_KINDS`.

    IVF-PQ: ``nlist`` inverted lists (``None``: √N, clamped to N/39 so k-means has enough points), ``m``
    sub-quantisers of ``nbits`` bits (``None``: dim/8 of 4 bits, else dim/16 — one byte per 16 dims at 4 or 8 bits;
    must divide the dim), ``nprobe`` lists visited per query (``None``: see :meth:`probes`). 4-bit codes (the
    default) use faiss's SIMD fast-scan (``IndexIVFPQFastScan``, codes of the vectors themselves); other widths the
    classic ``IndexIVFPQ`` (codes of residuals to the list centroid). OPQ + IVF-PQ adds a learnt rotation
    (``opq_iterations``), for dims up to
    :data:`MAX_OPQ_DIM`. HNSW: ``hnsw_m`` links per node, ``ef_construction`` and ``ef_search`` beam widths; it
    keeps the float32 vectors, so it needs N × dim × 4 bytes of memory. ``rerank``: the PQ kinds fetch this many
    candidates and re-rank them by exact distance from the stored descriptors (0: off). ``train_size`` rows
    (``None``: 50 per list, at least 10,000) are sampled to train; ``use_gpu`` moves the index to a GPU when faiss
    sees one.
    """

    kind: str = "flat"
    nlist: int | None = None
    m: int | None = None
    nbits: int = 4
    nprobe: int | None = None
    opq_iterations: int = 10
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    rerank: int = 100
    train_size: int | None = None
    use_gpu: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        INDEX_KINDS.get(self.kind)  # BadInputError naming the known kinds
        for name in ("nlist", "m", "nprobe", "train_size"):  # None: derived from the data
            if getattr(self, name) is not None:
                COUNT.check(f"IndexConfig.{name}", getattr(self, name))
        for name in ("nbits", "opq_iterations", "hnsw_m", "ef_construction", "ef_search"):
            COUNT.check(f"IndexConfig.{name}", getattr(self, name))
        NON_NEGATIVE_INT.check("IndexConfig.rerank", self.rerank)

    def lists(self, n: int, trained_on: int | None = None) -> int:
        """Inverted lists for ``n`` database rows: ``nlist`` or √n, at most (training rows)/39 (k-means' minimum)."""
        wanted = self.nlist or max(1, round(math.sqrt(n)))
        return max(1, min(wanted, (trained_on or n) // 39))

    def probes(self, nlist: int, n: int) -> int:
        """Lists an IVF index of ``nlist`` lists over ``n`` vectors visits per query: ``nprobe``, or enough lists for
        :data:`PROBE_VECTORS` vectors on average (every list of a small database), at least :data:`MIN_PROBES`."""
        if self.nprobe:
            return min(self.nprobe, max(1, nlist))
        return max(1, min(nlist, max(MIN_PROBES, math.ceil(nlist * PROBE_VECTORS / max(1, n)))))

    def subquantizers(self, dim: int) -> int:
        """PQ sub-quantisers for ``dim``-D descriptors (``m``, or dim/16 bytes' worth: dim/8 fast-scan 4-bit codes,
        else dim/16); refused unless it divides ``dim``."""
        m = self.m or max(1, dim // (8 if self.nbits == FAST_SCAN_BITS else 16))
        if dim % m:
            raise BadInputError(f"IVF-PQ needs m ({m}) to divide the descriptor dim ({dim}); pick another m",
                                hint="pick another --pq-m")
        return m

    def code_bytes(self, dim: int) -> int:
        """Bytes of one database vector's PQ code (without its 8-byte id)."""
        return -(-self.subquantizers(dim) * self.nbits // 8)

    def samples(self, n: int) -> int:
        """Rows sampled to train an index over ``n`` rows."""
        return min(n, self.train_size or max(50 * self.lists(n), 10_000))


# The kinds are registered in netvlad.search.index_kinds (no faiss at import); their names stay importable here.


EXACT = IndexConfig()  # flat L2, the default


def index_kind(index: faiss.Index) -> str:
    """The :data:`INDEX_KINDS` key of a built faiss index."""
    return kind_of(type(faiss.downcast_index(index)).__name__)


def index_settings(index: faiss.Index) -> dict:
    """What a built index is: kind, dim, size and (IVF) lists and sub-quantisers — what :func:`check_index` reads."""
    settings = {"kind": index_kind(index), "dim": int(index.d), "count": int(index.ntotal)}
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf = faiss.downcast_index(ivf)
        settings.update(nlist=int(ivf.nlist), m=int(ivf.pq.M), nbits=int(ivf.pq.nbits))
    return settings


def configure(index: faiss.Index, config: IndexConfig) -> faiss.Index:
    """Set the search-time knobs (``nprobe`` for IVF, ``ef_search`` for HNSW) of a built index; returns it."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = config.probes(ivf.nlist, ivf.ntotal)
    hnsw = faiss.downcast_index(index)
    if isinstance(hnsw, faiss.IndexHNSW):
        hnsw.hnsw.efSearch = config.ef_search
    return index


def check_index(index: faiss.Index, expected: dict, path: Path | str | None = None) -> None:
    """Refuse an index whose kind, dim, size or IVF-PQ shape differs from ``expected`` (e.g. ``index.json``)."""
    found = index_settings(index)
    wrong = [f"{key} {found[key]} (expected {expected[key]})" for key in found
             if key in expected and expected[key] is not None and found[key] != expected[key]]
    if wrong:
        raise BadInputError(f"{path or 'index'}: was built with other settings: {', '.join(wrong)}; rebuild it with "
                            "the same descriptors and settings", path=path, hint="rerun `netvlad index build`")


def gpu_available() -> bool:
    """True when faiss was built with GPU support and sees a GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def to_device(index: faiss.Index, use_gpu: bool) -> faiss.Index:
    """``index`` on a GPU when ``use_gpu`` asks and faiss sees one (else as it is, with a warning if asked)."""
    if use_gpu and gpu_available():
        try:
            return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        except RuntimeError as error:  # e.g. 4-bit fast-scan PQ, which faiss has only on the CPU
            logger.warning("faiss has no GPU version of this index (%s); searching on the CPU (classic IVF-PQ, "
                           "--pq-bits 8, runs on a GPU)", " ".join(str(error).split())[-120:])
            return index
    if use_gpu:
        logger.warning("a GPU index was asked for but faiss sees no GPU; searching on the CPU")
    return index


def training_sample(descriptors: np.ndarray, rows: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` of ``rows`` drawn at random (sorted, so a memory-mapped store is read forwards), as float32."""
    pick = np.sort(np.random.default_rng(seed).choice(rows, size=count, replace=False))
    return read_rows(descriptors, pick)  # in slices: never more than the sample in memory


def train_index(index: faiss.Index, sample: np.ndarray, config: IndexConfig) -> None:
    """Train a fresh index of :data:`INDEX_KINDS` on ``sample`` ``(T, dim)`` float32 (OPQ: its rotation first)."""
    if isinstance(index, faiss.IndexPreTransform):  # OPQ: the rotation first, then the index on rotated rows
        train_opq(faiss.downcast_VectorTransform(index.chain.at(0)), sample, config.nbits, config.opq_iterations,
                  config.seed)
    index.train(sample)


def build_index(descriptors: np.ndarray, config: IndexConfig = EXACT, *, valid: np.ndarray | None = None,
                max_memory: float | None = None, training: np.ndarray | None = None) -> faiss.Index:
    """A trained faiss index holding the rows of ``descriptors`` ``(N, dim)`` (those in the ``valid`` mask).

    ``descriptors`` may be a float16/float32 memmap: an approximate index trains on a sample of it (or on
    ``training`` ``(T, dim)``, e.g. a training set's descriptors) and is filled in chunks sized by ``max_memory``
    bytes. Index position i holds the i-th valid row.
    """
    if descriptors.ndim != 2:
        raise ValueError(f"expected descriptors as (N, dim), got shape {descriptors.shape}")
    rows = np.flatnonzero(valid) if valid is not None else np.arange(len(descriptors))
    if len(rows) == 0:
        raise ValueError("cannot build an index over an empty database")
    n, dim = len(rows), descriptors.shape[1]
    index = INDEX_KINDS.get(config.kind).build(dim, n, config, None if training is None else len(training))
    if not index.is_trained:
        sample = (training_sample(descriptors, rows, config.samples(n), config.seed) if training is None
                  else np.ascontiguousarray(training, dtype=np.float32))
        logger.info("training %s on %d of %d descriptors (%d-D)", config.kind, len(sample), n, dim)
        train_index(index, sample, config)
        del sample
    plan = plan_search(1, len(descriptors), dim, 1, max_memory, descriptors.dtype.itemsize)
    index = to_device(index, config.use_gpu)
    for _, chunk in iter_chunks(descriptors, plan.db_chunk, valid):
        index.add(chunk)
    return configure(index, config)


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours: -> (L2 distances ``(Q, k)`` float32, index positions ``(Q, k)`` int64).

    ``k`` is clamped to the database size; a dim mismatch is a clear error.
    """
    queries = np.ascontiguousarray(np.asarray(queries), dtype=np.float32)
    if queries.ndim != 2:
        raise ValueError(f"expected descriptors as (N, dim), got shape {queries.shape}")
    if queries.shape[1] != index.d:
        raise BadInputError(f"query descriptors are {queries.shape[1]}-D but the index holds {index.d}-D ones "
                            "(extracted with another model or whitening?)")
    k = max(1, min(int(k), index.ntotal))
    squared, indices = index.search(queries, k)
    return np.sqrt(np.maximum(squared, 0)).astype(np.float32), indices.astype(np.int64)


search_index = search  # the package's name for it: netvlad.search.exact is the exact-search module


def search_rows(index: faiss.Index, queries: np.ndarray, k: int, config: IndexConfig = EXACT,
                database: np.ndarray | None = None, rows: np.ndarray | None = None, verify=None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` as database rows: index position i is row ``rows[i]`` of ``database`` (default: row i).

    With ``database`` (e.g. a store's memmap), PQ kinds fetch ``config.rerank`` candidates and re-rank them exactly
    (``verify(rows, vectors)`` checks the rows read, e.g. a store's ``verify_rows``).
    -> (L2 distances ``(Q, k)``, row ids ``(Q, k)``, −1 where fewer than k).
    """
    k = max(1, min(int(k), index.ntotal))
    reranked = database is not None and config.rerank and index_kind(index) in approximate_kinds()
    wide = max(k, config.rerank) if reranked else k
    distances, found = search(index, queries, wide)
    if rows is not None:
        found = np.where(found >= 0, rows[np.maximum(found, 0)], -1)
    if wide > k:
        return rerank(database, queries, found, k, verify=verify)
    return distances, found


def write_index(index: faiss.Index, path: Path | str) -> None:
    """Save an index (a GPU index is copied to CPU first)."""
    if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        index = faiss.index_gpu_to_cpu(index)
    faiss.write_index(index, str(path))


def read_index(path: Path | str, use_gpu: bool = False) -> faiss.Index:
    """Load an index written by :func:`write_index`, onto a GPU only when ``use_gpu`` asks for it."""
    if not Path(path).is_file():
        raise BadInputError(f"{path}: index file not found; build it with `netvlad index build`", path=path)
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as error:  # faiss's one error type; its message is several lines of C++ context
        reason = " ".join(str(error).split())[-200:]
        raise BadInputError(f"{path}: not a readable faiss index ({reason}); rebuild it", path=path) from None
    return to_device(index, use_gpu)
