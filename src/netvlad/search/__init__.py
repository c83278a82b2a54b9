"""Search: exact streamed nearest-neighbour search over descriptor stores and the faiss indexes.

Exports load on first use, so the CLI lists the index kinds without importing faiss.
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.search.exact": ("exact_search",),
    "netvlad.search.index": ("IndexConfig", "build_index", "search_index"),
})
