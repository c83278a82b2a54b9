"""The demo's frozen configuration: which data, and a training recipe sized for a 2-core CPU in minutes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from netvlad.constants import EVAL_RADIUS_M
from netvlad.extract.engine import ENGINES
from netvlad.limits import COUNT, NON_NEGATIVE_INT, POSITIVE
from netvlad.train import TrainConfig

# Ranges of the demo's own options (the training options are checked by TrainConfig).
DEMO_LIMITS = {"frame_tolerance": NON_NEGATIVE_INT, "city_seed": NON_NEGATIVE_INT, "city_workers": NON_NEGATIVE_INT,
               "cluster_images": COUNT, "cluster_per_image": COUNT, "batch_size": COUNT, "workers": NON_NEGATIVE_INT,
               "seed": NON_NEGATIVE_INT, "localise": NON_NEGATIVE_INT, "retrieval_queries": NON_NEGATIVE_INT,
               "radius": POSITIVE}


@dataclass(frozen=True)
class DemoConfig:
    """Everything ``netvlad demo`` depends on; see :data:`PRESETS` for the named sizes.

    ``data`` is a dataset path (None: generate the synthetic city of ``city_size`` / ``city_seed``).
    ``size`` is the fixed input (height, width) pixels of every model; ``radius`` the metres within which a
    retrieved image counts as correct; ``ns`` the N of Recall@N.

    Examples:
        >>> config = DemoConfig.preset("tiny", seed=1)  # what ``netvlad demo --preset tiny --seed 1`` runs
        >>> config.city_size, config.size, config.seed
        ('tiny', (48, 64), 1)
        >>> config.train_config.num_clusters, config.train_config.epochs  # the training it runs
        (4, 1)
        >>> sorted(PRESETS)
        ['default', 'tiny']
    """

    data: str | None = None
    database: str | None = None  # sub-folders of a sequence / EXIF dataset (e.g. summer, winter)
    queries: str | None = None
    frame_tolerance: int | None = None  # sequences: ±frames counted as correct
    city_size: str = "default"
    city_seed: int = 0
    city_workers: int = 2
    size: tuple[int, int] = (120, 160)  # the city's native size; 240×320 costs 4× the time
    num_clusters: int = 16
    cluster_images: int = 150
    cluster_per_image: int = 50
    epochs: int = 5
    epoch_queries: int | None = 240
    cache_refresh: int = 120
    optimizer: str = "sgd"
    lr: float = 2e-4  # 1e-3 collapses the descriptors (all distances equal) within an epoch
    lr_step: int = 2
    num_negatives: int = 10
    whitening_dim: int | None = 512  # capped below the training database size (PCA needs more images than dims)
    radius: float = EVAL_RADIUS_M
    ns: tuple[int, ...] = (1, 2, 5, 10, 20)
    test_share: float = 0.4  # datasets without splits: the last share of places (or frames) is the test set
    batch_size: int = 16
    workers: int = 0
    engine: str = "torch"  # the evaluation's inference engine (torch, onnxruntime, auto)
    seed: int = 0
    localise: int = 5  # test queries to localise
    retrieval_queries: int = 6  # test queries shown with their top-5

    def __post_init__(self) -> None:
        for name, limit in DEMO_LIMITS.items():
            if getattr(self, name) is not None:
                limit.check(f"DemoConfig.{name}", getattr(self, name))
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        object.__setattr__(self, "ns", tuple(sorted(int(n) for n in self.ns)))
        if len(self.size) != 2 or min(self.size) < 32:
            raise ValueError(f"size must be (height, width) of at least 32 pixels, got {self.size}")
        if not 0 < self.test_share < 1:
            raise ValueError(f"test_share must lie in (0, 1), got {self.test_share}")
        ENGINES.get(self.engine)
        _ = self.train_config  # validates the training options

    @property
    def train_config(self) -> TrainConfig:
        """The training run: the paper's loss and mining, MobileNetV2 + NetVLAD, shortened to fit minutes."""
        return TrainConfig(
            backbone="mobilenet_v2", num_clusters=self.num_clusters, resize="fixed", size=self.size,
            cluster_images=self.cluster_images, cluster_per_image=self.cluster_per_image,
            cluster_descriptors=self.cluster_images * self.cluster_per_image, epochs=self.epochs,
            epoch_queries=self.epoch_queries, cache_refresh=self.cache_refresh, optimizer=self.optimizer,
            lr=self.lr, lr_step=self.lr_step, num_negatives=self.num_negatives, whitening_dim=self.whitening_dim,
            loss_normalization="sum",  # the normalisation its lr was chosen with
            val_radius=self.radius, batch_size=self.batch_size, workers=self.workers, seed=self.seed,
            checkpoint_every=10_000, tensorboard=False)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def preset(cls, name: str = "default", **overrides) -> DemoConfig:
        """A named preset (``default``: the README demo; ``tiny``: a seconds-long smoke run) with overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown demo preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**(PRESETS[name] | overrides))


PRESETS: dict[str, dict] = {
    "default": {},
    "tiny": {"city_size": "tiny", "size": (48, 64), "num_clusters": 4, "cluster_images": 20, "cluster_per_image": 10,
             "epochs": 1, "epoch_queries": 8, "cache_refresh": 8, "whitening_dim": 8, "batch_size": 8,
             "localise": 2, "retrieval_queries": 2},
}
