"""Spatial verification of a global shortlist with Patch-NetVLAD descriptors (Hausler et al., CVPR 2021).

Exports load on first use, so the CLI lists the presets without importing torch.
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.eval.verify.presets": ("VERIFY_PRESETS", "VerifyPreset", "get_preset"),
    "netvlad.eval.verify.matching": ("mutual_nearest", "ransac_inliers", "rapid_scores"),
    "netvlad.eval.verify.patches": ("PatchExtractor",),
    "netvlad.eval.verify.rerank": ("verify_shortlist",),
})
