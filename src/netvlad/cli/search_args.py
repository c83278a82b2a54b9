"""Search-index and search-time options shared by `evaluate`, `index build` and `query` (not a command)."""

from __future__ import annotations

import argparse

from netvlad.cli.common import number
from netvlad.limits import COUNT, NON_NEGATIVE_INT, POSITIVE, Limit
from netvlad.search.index import INDEX_KINDS


class CountList:
    """An argparse ``type`` for comma-separated counts: ``"1,5,10"`` -> (1, 5, 10); a clear error otherwise."""

    limit = COUNT  # each value's range (the argument checks read it, as they read `Number.limit`)
    __name__ = "comma-separated integers ≥ 1"  # argparse names the type by __name__

    def __call__(self, text: str) -> tuple[int, ...]:
        try:
            ns = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
        except ValueError:
            ns = ()
        if not ns or ns[0] < 1:
            raise argparse.ArgumentTypeError(f"must be comma-separated integers ≥ 1 (e.g. 1,5,10), got {text!r}")
        return ns


parse_ns = CountList()


def add_index_args(parser: argparse.ArgumentParser) -> None:
    """The faiss index options (``--index-type``, IVF/PQ/HNSW settings and the search options)."""
    group = parser.add_argument_group("search index")
    group.add_argument("--index-type", "--index-kind", dest="index_kind", default="flat", choices=INDEX_KINDS.names(),
                       help=INDEX_KINDS.describe())
    group.add_argument("--nlist", type=number(COUNT), default=None, help="IVF: inverted lists (default √N)")
    group.add_argument("--pq-m", type=number(COUNT), default=None,
                       help="PQ: sub-quantisers (default: dim/16 bytes per image, i.e. dim/8 of 4 bits)")
    group.add_argument("--pq-bits", type=number(Limit(1, 16, integer=True)), default=4,
                       help="PQ: bits per sub-quantiser code (4: SIMD fast-scan, the fastest; else classic IVF-PQ)")
    add_search_args(group)


def add_search_args(group) -> None:
    """Search-time options shared by ``evaluate``, ``index build`` and ``query``."""
    group.add_argument("--nprobe", type=number(COUNT), default=None,
                       help="IVF: lists visited per query (default: lists holding ≥ 16,384 vectors, at least 16)")
    group.add_argument("--ef-search", type=number(COUNT), default=128, help="HNSW: search beam width")
    group.add_argument("--rerank", type=number(NON_NEGATIVE_INT), default=100, metavar="C",
                       help="IVF-PQ: re-rank the top C candidates exactly from the stored descriptors (0: off)")
    group.add_argument("--max-memory", type=number(POSITIVE), default=None, metavar="GIB",
                       help="working memory of exact search and index building, GiB (default: half the available)")


def max_memory_from_args(args: argparse.Namespace) -> float | None:
    """``--max-memory`` in bytes (None: the library's default)."""
    return None if args.max_memory is None else args.max_memory * 1024**3


def index_config_from_args(args: argparse.Namespace, device=None):
    """The :class:`netvlad.search.index.IndexConfig` of the command line; faiss uses a GPU only when ``--device``
    picked CUDA."""
    from netvlad.search.index import IndexConfig

    return IndexConfig(kind=getattr(args, "index_kind", "flat"), nlist=getattr(args, "nlist", None),
                       m=getattr(args, "pq_m", None), nbits=getattr(args, "pq_bits", 4), nprobe=args.nprobe,
                       ef_search=args.ef_search, rerank=args.rerank,
                       use_gpu=device is not None and device.type == "cuda")
