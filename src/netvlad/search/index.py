"""faiss indexes over global descriptors: exact (flat L2) or approximate (IVF-PQ, OPQ + IVF-PQ, HNSW).

Each kind of index is one decorated factory ``(dim, n, config, trained_on) -> faiss.Index`` in :data:`INDEX_KINDS`,
building an untrained index for ``n`` database rows of ``dim`` dims (``trained_on``: training rows when they are not
a sample of the database). ``approximate`` kinds store approximate distances, so their top candidates are re-ranked
exactly from the stored descriptors; ``builds`` names the faiss classes the factory returns, so a loaded index knows
its kind. Adding a kind is one decorated function here:

    @register_index_kind("ivfflat", help="IVF over float32 vectors", builds=("IndexIVFFlat",))
    def _ivfflat(dim, n, config, trained_on=None):
        import faiss

        return faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, config.lists(n, trained_on))

Approximate indexes are built from a database that need not fit in memory (a memory-mapped store): they are
trained on a random sample of rows and filled chunk by chunk. The device is the caller's choice: CPU unless
``IndexConfig.use_gpu`` asks for a GPU (the CLI sets it from ``--device``). faiss and numpy are imported inside the
functions, so ``netvlad --help`` lists the kinds at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from netvlad.errors import BadInputError
from netvlad.limits import COUNT, NON_NEGATIVE_INT
from netvlad.registry import Registry

if TYPE_CHECKING:
    import faiss
    import numpy as np


logger = logging.getLogger(__name__)

FAST_SCAN_BITS = 4  # faiss's SIMD fast-scan PQ takes 4-bit codes only
# Default IVF probes: lists holding this many vectors on average, at least MIN_PROBES. Small databases are then
# searched whole (their queries' true matches often sit in far lists: 16 of 36 lists lost 3.6 points of Recall@1 on
# the generated city), large ones at a cost that stays flat in N (√N lists of √N vectors: 17 of 1,000 at 10⁶).
PROBE_VECTORS = 16_384
MIN_PROBES = 16
MAX_OPQ_DIM = 4096  # OPQ learns a dim × dim rotation: beyond this, whiten to fewer dims first


@dataclass(frozen=True)
class IndexKind:
    """One kind of index: its factory, whether its distances are approximate, the faiss classes it builds."""

    name: str
    build: Callable[..., faiss.Index]
    approximate: bool
    builds: tuple[str, ...]


INDEX_KINDS: Registry[IndexKind] = Registry("index kind", known="known")


def register_index_kind(name: str, help: str, builds: tuple[str, ...], approximate: bool = False) -> Callable:
    """Decorator: register a factory ``(dim, n, config, trained_on=None) -> faiss.Index`` as index kind ``name``."""

    def decorate(build: Callable[..., faiss.Index]) -> Callable[..., faiss.Index]:
        INDEX_KINDS.add(name, IndexKind(name, build, approximate, builds), help)
        return build

    return decorate


def approximate_kinds() -> tuple[str, ...]:
    """The kinds whose distances are approximate (their candidates are worth re-ranking exactly)."""
    return tuple(name for name in INDEX_KINDS.names() if INDEX_KINDS.get(name).approximate)


def kind_of(class_name: str) -> str:
    """The kind whose factory builds faiss class ``class_name`` (``"?"`` if none)."""
    return next((name for name in INDEX_KINDS.names() if class_name in INDEX_KINDS.get(name).builds), "?")


@register_index_kind("flat", builds=("IndexFlatL2",),
                     help="exact L2; streams the database from disk (the store is the index)")
def _flat(dim: int, n: int, config: IndexConfig, trained_on: int | None = None) -> faiss.Index:
    import faiss

    return faiss.IndexFlatL2(dim)


@register_index_kind("ivfpq", approximate=True, builds=("IndexIVFPQ", "IndexIVFPQFastScan"),
                     help="IVF + PQ codes (4-bit SIMD fast-scan by default), top candidates re-ranked exactly")
def _ivfpq(dim: int, n: int, config: IndexConfig, trained_on: int | None = None) -> faiss.Index:
    import faiss

    m, nlist = config.subquantizers(dim), config.lists(n, trained_on)
    trainable = trained_on or n
    if config.nlist and nlist < config.nlist:
        logger.warning("IVF-PQ: %d descriptors are too few for %d lists; using %d", trainable, config.nlist, nlist)
    if trainable < 2**config.nbits:
        raise BadInputError(f"IVF-PQ with {config.nbits}-bit codes needs at least {2**config.nbits} database "
                            f"descriptors to train, got {trainable}; use the flat index or fewer bits",
                            hint="use --index-type flat or fewer --pq-bits")
    if config.nbits == FAST_SCAN_BITS:
        # fast-scan: 4-bit codes scanned 32 at a time in SIMD registers, ~10× classic IVF-PQ per code at 10⁶.
        # Codes of the vectors, not of residuals: measured faster and nearer exact.
        index = faiss.IndexIVFPQFastScan(faiss.IndexFlatL2(dim), dim, nlist, m, config.nbits)
        index.by_residual = False
    else:
        index = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, nlist, m, config.nbits)
    index.cp.seed = config.seed
    index.pq.cp.seed = config.seed
    index.nprobe = config.probes(nlist, n)
    return index


@register_index_kind("opq-ivfpq", approximate=True, builds=("IndexPreTransform",),
                     help="IVF-PQ after a learnt OPQ rotation (dims up to 4096)")
def _opq_ivfpq(dim: int, n: int, config: IndexConfig, trained_on: int | None = None) -> faiss.Index:
    import faiss

    if dim > MAX_OPQ_DIM:
        raise BadInputError(f"OPQ learns a {dim} × {dim} rotation; {dim}-D is above its limit of {MAX_OPQ_DIM}: "
                            "whiten to fewer dims first or use ivfpq", hint="use --index-type ivfpq")
    ivfpq = _ivfpq(dim, n, config, trained_on)
    opq = faiss.OPQMatrix(dim, ivfpq.pq.M)
    opq.niter = config.opq_iterations  # trained by netvlad.search.opq (faiss's own training is ~20× slower here)
    return faiss.IndexPreTransform(opq, ivfpq)  # faiss's wrapper keeps opq and ivfpq alive with it


@register_index_kind("hnsw", builds=("IndexHNSWFlat",),
                     help="HNSW graph over float32 vectors in RAM (--ef-search)")
def _hnsw(dim: int, n: int, config: IndexConfig, trained_on: int | None = None) -> faiss.Index:
    import faiss

    index = faiss.IndexHNSWFlat(dim, config.hnsw_m)
    index.hnsw.efConstruction = config.ef_construction
    index.hnsw.efSearch = config.ef_search
    return index


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

    Examples:
        >>> IndexConfig().kind, INDEX_KINDS.names()
        ('flat', ['flat', 'hnsw', 'ivfpq', 'opq-ivfpq'])
        >>> IndexConfig(kind="hnsw", hnsw_m=16).ef_search
        128
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


# The kinds are registered in netvlad.search.index (no faiss at import); their names stay importable here.


EXACT = IndexConfig()  # flat L2, the default


def index_kind(index: faiss.Index) -> str:
    """The :data:`INDEX_KINDS` key of a built faiss index."""
    import faiss

    return kind_of(type(faiss.downcast_index(index)).__name__)


def index_settings(index: faiss.Index) -> dict:
    """What a built index is: kind, dim, size and (IVF) lists and sub-quantisers — what :func:`check_index` reads."""
    import faiss

    settings = {"kind": index_kind(index), "dim": int(index.d), "count": int(index.ntotal)}
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf = faiss.downcast_index(ivf)
        settings.update(nlist=int(ivf.nlist), m=int(ivf.pq.M), nbits=int(ivf.pq.nbits))
    return settings


def configure(index: faiss.Index, config: IndexConfig) -> faiss.Index:
    """Set the search-time knobs (``nprobe`` for IVF, ``ef_search`` for HNSW) of a built index; returns it."""
    import faiss

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
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def to_device(index: faiss.Index, use_gpu: bool) -> faiss.Index:
    """``index`` on a GPU when ``use_gpu`` asks and faiss sees one (else as it is, with a warning if asked)."""
    import faiss

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
    import numpy as np

    from netvlad.search.exact import read_rows

    pick = np.sort(np.random.default_rng(seed).choice(rows, size=count, replace=False))
    return read_rows(descriptors, pick)  # in slices: never more than the sample in memory


def train_index(index: faiss.Index, sample: np.ndarray, config: IndexConfig) -> None:
    """Train a fresh index of :data:`INDEX_KINDS` on ``sample`` ``(T, dim)`` float32 (OPQ: its rotation first)."""
    import faiss

    from netvlad.search.opq import train_opq

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

    Examples:
        >>> import numpy as np
        >>> index = build_index(np.eye(4, dtype=np.float32))
        >>> type(index).__name__, index.ntotal
        ('IndexFlatL2', 4)
        >>> index = build_index(np.eye(4, dtype=np.float32), valid=np.array([True, False, True, True]))
        >>> index.ntotal  # position 1 holds row 2
        3
    """
    import numpy as np

    from netvlad.search.exact import iter_chunks, plan_search

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


def search_index(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours: -> (L2 distances ``(Q, k)`` float32, index positions ``(Q, k)`` int64).

    ``k`` is clamped to the database size; a dim mismatch is a clear error.

    Shape:
        - queries: ``(Q, dim)``
        - output: distances ``(Q, k)`` float32 and index positions ``(Q, k)`` int64

    Examples:
        >>> import numpy as np
        >>> index = build_index(np.eye(4, dtype=np.float32))
        >>> distances, ids = search_index(index, np.array([[0.0, 0.0, 0.2, 0.8]], dtype=np.float32), k=2)
        >>> ids, distances.round(4)
        (array([[3, 2]]), array([[0.2828, 1.1314]], dtype=float32))
    """
    import numpy as np

    queries = np.ascontiguousarray(np.asarray(queries), dtype=np.float32)
    if queries.ndim != 2:
        raise ValueError(f"expected descriptors as (N, dim), got shape {queries.shape}")
    if queries.shape[1] != index.d:
        raise BadInputError(f"query descriptors are {queries.shape[1]}-D but the index holds {index.d}-D ones "
                            "(extracted with another model or whitening?)")
    k = max(1, min(int(k), index.ntotal))
    squared, indices = index.search(queries, k)
    return np.sqrt(np.maximum(squared, 0)).astype(np.float32), indices.astype(np.int64)



def search_rows(index: faiss.Index, queries: np.ndarray, k: int, config: IndexConfig = EXACT,
                database: np.ndarray | None = None, rows: np.ndarray | None = None, verify=None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` as database rows: index position i is row ``rows[i]`` of ``database`` (default: row i).

    With ``database`` (e.g. a store's memmap), PQ kinds fetch ``config.rerank`` candidates and re-rank them exactly
    (``verify(rows, vectors)`` checks the rows read, e.g. a store's ``verify_rows``).
    -> (L2 distances ``(Q, k)``, row ids ``(Q, k)``, −1 where fewer than k).
    """
    import numpy as np

    from netvlad.search.exact import rerank

    k = max(1, min(int(k), index.ntotal))
    reranked = database is not None and config.rerank and index_kind(index) in approximate_kinds()
    wide = max(k, config.rerank) if reranked else k
    distances, found = search_index(index, queries, wide)
    if rows is not None:
        found = np.where(found >= 0, rows[np.maximum(found, 0)], -1)
    if wide > k:
        return rerank(database, queries, found, k, verify=verify)
    return distances, found


def write_index(index: faiss.Index, path: Path | str) -> None:
    """Save an index (a GPU index is copied to CPU first)."""
    import faiss

    if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        index = faiss.index_gpu_to_cpu(index)
    faiss.write_index(index, str(path))


def read_index(path: Path | str, use_gpu: bool = False) -> faiss.Index:
    """Load an index written by :func:`write_index`, onto a GPU only when ``use_gpu`` asks for it."""
    import faiss

    if not Path(path).is_file():
        raise BadInputError(f"{path}: index file not found; build it with `netvlad index build`", path=path)
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as error:  # faiss's one error type; its message is several lines of C++ context
        reason = " ".join(str(error).split())[-200:]
        raise BadInputError(f"{path}: not a readable faiss index ({reason}); rebuild it", path=path) from None
    return to_device(index, use_gpu)
