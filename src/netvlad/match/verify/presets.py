"""Named Patch-NetVLAD re-ranking configurations (the paper's ``performance``, ``speed`` and ``storage``).

Pure records: this module imports no torch, numpy or faiss, so the CLI lists the presets without loading them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from netvlad.errors import BadInputError
from netvlad.registry import Registry

SCORERS = ("ransac", "rapid")


@dataclass(frozen=True)
class VerifyPreset:
    """How a shortlist is re-ranked by patch matching.

    ``sizes``: patch sizes P in feature-map cells; ``stride``: window stride in cells; ``weights``: fusion weight of
    each size's normalised score; ``dim``: patch descriptor dims after whitening; ``scorer``: ``"ransac"``
    (homography inliers) or ``"rapid"`` (rapid spatial scoring); ``thresholds``: RANSAC inlier distance per size, map
    cells (default 1.5 for every size: Patch-NetVLAD's 24 pixels at VGG16's 16-pixel cells); ``global_weight``:
    weight λ of the normalised global similarity in the final score (0: patch score alone).

    Examples:
        >>> VERIFY_PRESETS.names()
        ['performance', 'speed', 'storage']
        >>> preset = VerifyPreset("toy", "one patch size, 32-D", sizes=(2,), dim=32, scorer="ransac")
        >>> preset.weights, preset.thresholds
        ((1.0,), (1.5,))
    """

    name: str
    description: str
    sizes: tuple[int, ...]
    dim: int
    scorer: str
    stride: int = 1
    weights: tuple[float, ...] = ()
    thresholds: tuple[float, ...] = ()
    global_weight: float = 0.0
    hypotheses: int = 256

    def __post_init__(self) -> None:
        weights = self.weights or tuple(1.0 / len(self.sizes) for _ in self.sizes)
        thresholds = self.thresholds or tuple(1.5 for _ in self.sizes)
        if self.scorer not in SCORERS:
            raise BadInputError(f"scorer must be one of {', '.join(SCORERS)}, got {self.scorer!r}")
        if not self.sizes or len(weights) != len(self.sizes) or len(thresholds) != len(self.sizes):
            raise BadInputError(f"preset {self.name}: one weight and one threshold per patch size {self.sizes}")
        if min(self.sizes) < 1 or self.stride < 1 or self.dim < 1 or not 0 <= self.global_weight <= 1:
            raise BadInputError(f"preset {self.name}: sizes, stride and dim must be ≥ 1 and global_weight in [0, 1]")
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))
        object.__setattr__(self, "thresholds", tuple(float(t) for t in thresholds))

    @property
    def largest(self) -> int:
        """The largest patch size, cells."""
        return max(self.sizes)

    def with_global_weight(self, weight: float) -> VerifyPreset:
        """This preset with another fusion weight of the global similarity."""
        return VerifyPreset(**(asdict(self) | {"global_weight": float(weight)}))

    def with_thresholds(self, thresholds: tuple[float, ...]) -> VerifyPreset:
        """This preset with other RANSAC inlier distances, map cells: one for every patch size, or one per size."""
        if len(thresholds) == 1:
            thresholds = tuple(thresholds) * len(self.sizes)
        if not all(t > 0 for t in thresholds):
            raise BadInputError(f"RANSAC thresholds must be > 0 map cells, got {tuple(thresholds)}")
        return VerifyPreset(**(asdict(self) | {"thresholds": tuple(float(t) for t in thresholds)}))

    def to_dict(self) -> dict:
        """The JSON form written into patch stores and reports."""
        return asdict(self)


VERIFY_PRESETS: Registry[VerifyPreset] = Registry("verification preset")
# The paper's configurations (Hausler et al. 2021, configs/*.ini): sizes, weights, dims and scorers. λ (FUSED) and
# the candidates re-ranked (TOP) are the row `netvlad benchmark --suite reranking` chose by leave-one-set-out:
# docs/results/reranking-defaults.md.
FUSED = 0.5
TOP = 50
# RANSAC inliers within 1.5 cells for every patch size, as Patch-NetVLAD's patch_matcher.py (16 · stride · 1.5 px).
VERIFY_PRESETS.add("performance", VerifyPreset(
    "performance", "patch sizes 2, 5, 8 (weights 0.45, 0.15, 0.4), 4096-D, RANSAC homography inliers",
    sizes=(2, 5, 8), dim=4096, scorer="ransac", weights=(0.45, 0.15, 0.4), global_weight=FUSED))
VERIFY_PRESETS.add("speed", VerifyPreset(
    "speed", "patch size 5, 512-D, rapid spatial scoring", sizes=(5,), dim=512, scorer="rapid", global_weight=FUSED))
VERIFY_PRESETS.add("storage", VerifyPreset(
    "storage", "patch size 5, 128-D, rapid spatial scoring", sizes=(5,), dim=128, scorer="rapid",
    global_weight=FUSED))


def get_preset(name: str) -> VerifyPreset:
    """The preset registered as ``name`` (a one-line error listing the presets otherwise).

    Examples:
        >>> preset = get_preset("speed")
        >>> preset.sizes, preset.dim, preset.scorer
        ((5,), 512, 'rapid')
    """
    return VERIFY_PRESETS.get(name)
