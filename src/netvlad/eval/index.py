"""faiss search over global descriptors: exact (flat L2) or approximate (IVF-PQ), on GPU when present."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

from netvlad.errors import BadInputError
from netvlad.limits import COUNT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexConfig:
    """Which faiss index to build: ``kind`` is a key of :data:`INDEX_KINDS`.

    IVF-PQ: ``nlist`` inverted lists (clamped to N/39 so k-means has enough points), ``m`` sub-quantisers
    of ``nbits`` bits each (``m`` must divide the descriptor dim), ``nprobe`` lists visited per query.
    """

    kind: str = "flat"
    nlist: int = 256
    m: int = 32
    nbits: int = 8
    nprobe: int = 16
    use_gpu: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise BadInputError(f"unknown index kind {self.kind!r}; known: {', '.join(sorted(INDEX_KINDS))}")
        for name in ("nlist", "m", "nbits", "nprobe"):
            COUNT.check(f"IndexConfig.{name}", getattr(self, name))


def _flat(descriptors: np.ndarray, config: IndexConfig) -> faiss.Index:
    return faiss.IndexFlatL2(descriptors.shape[1])


def _ivfpq(descriptors: np.ndarray, config: IndexConfig) -> faiss.Index:
    n, dim = descriptors.shape
    if dim % config.m:
        raise BadInputError(f"IVF-PQ needs m ({config.m}) to divide the descriptor dim ({dim}); pick another m",
                            hint="--pq-m")
    nlist = max(1, min(config.nlist, n // 39))
    if nlist < config.nlist:
        logger.warning("IVF-PQ: %d descriptors are too few for %d lists; using %d", n, config.nlist, nlist)
    if n < 2**config.nbits:
        raise BadInputError(f"IVF-PQ with {config.nbits}-bit codes needs at least {2**config.nbits} database "
                         f"descriptors to train, got {n}; use the flat index or fewer bits (nbits)",
                            hint="--index-kind flat, or a smaller --pq-bits")
    index = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, nlist, config.m, config.nbits)
    index.cp.seed = config.seed
    index.pq.cp.seed = config.seed
    index.train(descriptors)
    index.nprobe = config.nprobe
    return index


INDEX_KINDS: dict[str, Callable[[np.ndarray, IndexConfig], faiss.Index]] = {"flat": _flat, "ivfpq": _ivfpq}
EXACT = IndexConfig()  # flat L2, the default


def gpu_available() -> bool:
    """True when faiss was built with GPU support and sees a GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def build_index(descriptors: np.ndarray, config: IndexConfig = EXACT) -> faiss.Index:
    """A trained faiss index holding ``descriptors`` ``(N, dim)`` (moved to GPU when asked and present)."""
    descriptors = _as_f32(descriptors)
    if len(descriptors) == 0:
        raise ValueError("cannot build an index over an empty database")
    index = INDEX_KINDS[config.kind](descriptors, config)
    if config.use_gpu and gpu_available():
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(descriptors)
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours: -> (L2 distances ``(Q, k)`` float32, database indices ``(Q, k)`` int64).

    ``k`` is clamped to the database size; a dim mismatch is a clear error.
    """
    queries = _as_f32(queries)
    if queries.shape[1] != index.d:
        raise ValueError(f"query descriptors are {queries.shape[1]}-D but the index holds {index.d}-D ones "
                         "(extracted with another model or whitening?)")
    k = max(1, min(int(k), index.ntotal))
    squared, indices = index.search(queries, k)
    return np.sqrt(np.maximum(squared, 0)).astype(np.float32), indices.astype(np.int64)


def write_index(index: faiss.Index, path) -> None:
    """Save an index (a GPU index is copied to CPU first)."""
    if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        index = faiss.index_gpu_to_cpu(index)
    faiss.write_index(index, str(path))


def read_index(path, use_gpu: bool = True) -> faiss.Index:
    """Load an index written by :func:`write_index` (onto GPU when asked and present)."""
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as error:  # faiss's one error type; its message is several lines of C++ context
        reason = " ".join(str(error).split())[-200:]
        raise BadInputError(f"{path}: not a readable faiss index ({reason}); rebuild it", path=path) from None
    if use_gpu and gpu_available():
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


def _as_f32(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected descriptors as (N, dim), got shape {x.shape}")
    return x
