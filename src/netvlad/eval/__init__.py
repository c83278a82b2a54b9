"""Evaluation and retrieval: extraction to disk, faiss search, Recall@N, localisation and export.

Exports load on first use, so the CLI reads protocol tables without importing torch or faiss.
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.eval.extract": ("extract_descriptors", "extract_to_store", "iter_descriptors"),
    "netvlad.eval.index": ("IndexConfig", "build_index", "search_index"),
    "netvlad.eval.localise": ("PlaceIndex", "QueryResult", "build_place_index"),
    "netvlad.eval.recall": ("recall_at_n",),
    "netvlad.eval.retrieval": ("EvalResult", "evaluate", "evaluate_descriptors"),
    "netvlad.eval.search": ("exact_search",),
    "netvlad.eval.store": ("DescriptorStore",),
})
