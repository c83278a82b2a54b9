"""The index-kind registry, importable without faiss or torch: each kind of faiss index is one decorated factory.

A factory ``(dim, n, config, trained_on) -> faiss.Index`` builds an untrained index for ``n`` database rows of
``dim`` dims (``trained_on``: training rows when they are not a sample of the database); faiss is imported when it
is called, so ``netvlad --help`` lists the kinds at once. ``approximate`` kinds store approximate distances, so
their top candidates are re-ranked exactly from the stored descriptors; ``builds`` names the faiss classes the
factory returns, so a loaded index knows its kind. Adding a kind is one decorated function here:

    @register_index_kind("ivfflat", help="IVF over float32 vectors", builds=("IndexIVFFlat",))
    def _ivfflat(dim, n, config, trained_on=None):
        import faiss

        return faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, config.lists(n, trained_on))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netvlad.errors import BadInputError
from netvlad.registry import Registry

if TYPE_CHECKING:
    import faiss

    from netvlad.search.index import IndexConfig

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
