"""The k-means sampling config, importable without torch or faiss (``netvlad cluster --help`` shows its defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterConfig:
    """How many local descriptors to sample for k-means (defaults from the paper's code) and the k-means seed."""

    num_descriptors: int = 50_000  # in all
    per_image: int = 100  # sampled positions per image
    num_images: int = 500  # images sampled from the training set
    seed: int = 0
    niter: int = 100  # k-means iterations
    ratio_average: str = "geometric"  # α: "geometric" (official closed form) or "arithmetic" (mean ratio 100)

    def __post_init__(self) -> None:
        if self.ratio_average not in ("geometric", "arithmetic"):
            raise ValueError(f"ClusterConfig.ratio_average must be geometric or arithmetic, got {self.ratio_average!r}")
        for name in ("num_descriptors", "per_image", "num_images", "niter"):
            if getattr(self, name) < 1:
                raise ValueError(f"ClusterConfig.{name} must be ≥ 1, got {getattr(self, name)}")
