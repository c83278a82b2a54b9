"""Spatial verification of a global shortlist with Patch-NetVLAD descriptors (Hausler et al., CVPR 2021).

Exports load on first use, so the CLI lists the presets without importing torch.

Example:
    >>> from netvlad.eval.verify import get_preset
    >>> get_preset("speed").sizes, get_preset("speed").dim
    ((5,), 512)
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.eval.verify.presets": ("VERIFY_PRESETS", "VerifyPreset", "get_preset"),
    "netvlad.eval.verify.matching": ("mutual_nearest", "ransac_inliers", "rapid_scores"),
    "netvlad.eval.verify.patches": ("PatchExtractor", "Patches", "fit_patch_whitening", "require_netvlad"),
    "netvlad.eval.verify.rerank": ("verify_shortlist",),
    "netvlad.eval.verify.store": ("PatchStore", "create_patch_store", "extract_patch_store"),
    "netvlad.eval.verify.run": ("VerifiedRanking", "patch_whitening", "verify_folders", "verify_ranking"),
    "netvlad.eval.verify.evaluate": ("VerifiedEval", "evaluate_verified", "verify_given"),
    "netvlad.eval.verify.sequence": ("verify_sequence",),
    "netvlad.eval.verify.panoramas": ("panorama_groups",),
    "netvlad.eval.verify.folders": ("verify_folder_ranking", "verify_index_search"),
})
