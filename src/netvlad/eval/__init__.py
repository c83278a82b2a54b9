"""Evaluation: Recall@N, precision–recall, the benchmark protocols, reports, verified and sequence evaluation, and the
hloc export.

Exports load on first use, so the CLI reads protocol tables without importing torch or faiss.
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.eval.recall": ("EvalResult", "evaluate", "evaluate_descriptors", "recall_at_n"),
    "netvlad.eval.verified": ("VerifiedEval", "evaluate_verified", "verify_given"),
    "netvlad.eval.verified_sequence": ("verify_sequence",),
    "netvlad.eval.verified_folders": ("verify_folder_ranking", "verify_index_search"),
})
