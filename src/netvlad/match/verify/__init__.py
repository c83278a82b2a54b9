"""Spatial verification of a global shortlist with Patch-NetVLAD descriptors (Hausler et al., CVPR 2021).

Exports load on first use, so the CLI lists the presets without importing torch.

Example:
    >>> from netvlad.match.verify import get_preset
    >>> get_preset("speed").sizes, get_preset("speed").dim
    ((5,), 512)
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.match.verify.presets": ("VERIFY_PRESETS", "VerifyPreset", "get_preset"),
    "netvlad.match.verify.matching": ("mutual_nearest", "ransac_inliers", "rapid_scores"),
    "netvlad.match.verify.patches": ("PatchExtractor", "Patches", "fit_patch_whitening", "require_netvlad"),
    "netvlad.match.verify.rerank": ("fuse_scores", "verify_shortlist"),
    "netvlad.match.verify.patch_store": ("PatchStore", "create_patch_store", "extract_patch_store"),
    "netvlad.match.verify.run": ("VerifiedRanking", "patch_extractor", "patch_whitening", "rescore_ranking",
                                 "verify_folders", "verify_ranking"),
    "netvlad.match.verify.panoramas": ("panorama_groups",),
})
