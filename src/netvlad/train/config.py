"""The training configuration: one frozen dataclass, defaults from the paper, loadable from YAML or TOML."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from netvlad.constants import EVAL_RADIUS_M, NEGATIVE_RADIUS_M, POSITIVE_RADIUS_M
from netvlad.models import ModelConfig, Preprocessing
from netvlad.train.clusters import ClusterConfig

OPTIMIZERS = ("sgd", "adam")
MINING_MODES = ("full", "partial")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (the dataset aside); saved resolved in the run folder."""

    # model
    backbone: str = "mobilenet_v2"
    num_clusters: int = 64
    parametrization: str = "official"
    pretrained: bool = True
    resize: str = "longest"
    size: tuple[int, ...] = (640,)
    train_from: int | None = None  # None: the backbone's default (layers below conv5 frozen for VGG16)
    init_model: str | None = None  # start from this checkpoint instead (e.g. from `netvlad cluster`)
    # cluster initialisation
    cluster_descriptors: int = 50_000
    cluster_per_image: int = 100
    cluster_images: int = 500
    # ground truth (metres)
    pos_radius: float = POSITIVE_RADIUS_M  # potential positives within
    neg_radius: float = NEGATIVE_RADIUS_M  # definite negatives beyond
    val_radius: float = EVAL_RADIUS_M
    val_places: int = 0  # hold out the last N database images and queries for validation
    # loss and mining
    margin: float = 0.1
    num_negatives: int = 10
    negative_samples: int = 1000
    cache_refresh: int = 1000  # queries between cache refreshes; doubles each time the lr halves
    cache_dtype: str = "float16"
    cache_memmap_mb: float = 1024.0  # caches larger than this live in a memory-mapped file in the run folder
    mining: str = "full"  # "partial": mine within a random database subset (DVGB), for sets too large to cache
    partial_database: int = 5000
    # optimisation
    optimizer: str = "sgd"
    lr: float = 1e-4
    lr_step: int = 5  # epochs between lr decays
    lr_gamma: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 1e-3
    batch_tuples: int = 4
    epochs: int = 30
    epoch_queries: int | None = None  # train on at most this many queries per epoch (short runs)
    whitening_dim: int | None = None  # fit PCA whitening to this size at the end
    precompute_frozen: bool = True  # compute the frozen stages' output once per image (resize="fixed" only)
    # bookkeeping
    seed: int = 0
    batch_size: int = 8  # images per forward pass when caching and validating
    workers: int = 0
    checkpoint_every: int = 25  # batches between resumable checkpoints (also after every cache refresh)
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.mining not in MINING_MODES:
            raise ValueError(f"mining must be one of {MINING_MODES}, got {self.mining!r}")
        if self.cache_dtype not in ("float16", "float32"):
            raise ValueError(f"cache_dtype must be float16 or float32, got {self.cache_dtype!r}")
        if not 0 < self.pos_radius <= self.neg_radius:
            raise ValueError(f"need 0 < pos_radius ≤ neg_radius, got {self.pos_radius} and {self.neg_radius}")
        for name in ("num_negatives", "negative_samples", "cache_refresh", "batch_tuples", "epochs", "lr_step",
                     "checkpoint_every", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        Preprocessing(resize=self.resize, size=self.size)  # validates resize/size

    @property
    def model_config(self) -> ModelConfig:
        """The PlaceModel this config trains."""
        return ModelConfig(backbone=self.backbone, pool="netvlad", num_clusters=self.num_clusters,
                           parametrization=self.parametrization, train_from=self.train_from,
                           preprocessing=Preprocessing(resize=self.resize, size=self.size))

    @property
    def cluster_config(self) -> ClusterConfig:
        return ClusterConfig(num_descriptors=self.cluster_descriptors, per_image=self.cluster_per_image,
                             num_images=self.cluster_images, seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a flat mapping; unknown keys are an error naming ``source``, not silently ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{source}: unknown training option(s) {unknown}; see `netvlad train --help`")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def field_types() -> dict[str, Any]:
    """Resolved type of each TrainConfig field (for building command-line flags)."""
    return typing.get_type_hints(TrainConfig)


def read_config_file(path: Path | str) -> dict[str, Any]:
    """A flat mapping of options from a ``.yaml``/``.yml`` or ``.toml`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    text = path.read_text()
    try:
        data = _read_toml(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:  # tomllib.TOMLDecodeError is a ValueError
        raise ValueError(f"{path}: cannot parse config ({error})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must be a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _read_toml(text: str) -> dict:
    try:
        import tomllib  # Python ≥ 3.11
    except ModuleNotFoundError:
        raise ValueError("TOML configs need Python ≥ 3.11; use YAML instead") from None
    return tomllib.loads(text)


def write_config(config: TrainConfig, path: Path | str) -> Path:
    """Write the resolved config as YAML."""
    path = Path(path)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path
