"""The training configuration: one frozen dataclass, defaults from the paper, loadable from YAML or TOML."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from netvlad.constants import EVAL_RADIUS_M, NEGATIVE_RADIUS_M, POSITIVE_RADIUS_M
from netvlad.errors import BadInputError
from netvlad.extract.engine import ENGINES
from netvlad.files import atomic_write
from netvlad.limits import COUNT, FRACTION, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, Limit
from netvlad.models import ModelConfig, Preprocessing
from netvlad.train.optim import OPTIMIZERS, SCHEDULERS

if TYPE_CHECKING:  # imported when used: the CLI reads this module without torch
    from netvlad.extract.clusters import ClusterConfig

MINING_MODES = ("full", "partial")
LOSS_NORMALIZATIONS = ("sum", "negative_mean", "violating_mean")  # netvlad.train.loss.NORMALIZATIONS
ALPHA_AVERAGES = ("geometric", "arithmetic")  # netvlad.nn.netvlad.RatioAverage, without importing torch
# Allowed range of every numeric option (None is also allowed where the type says so); the CLI checks the same.
LIMITS: dict[str, Limit] = {
    "num_clusters": COUNT, "size": COUNT, "train_from": NON_NEGATIVE_INT, "cluster_descriptors": COUNT,
    "cluster_per_image": COUNT, "cluster_images": COUNT, "pos_radius": POSITIVE, "neg_radius": POSITIVE,
    "min_positive_distance": NON_NEGATIVE, "exclude_dark_below": Limit(0, 255, low_open=True),
    "exclude_duplicates_above": Limit(0, 1, low_open=True),
    "val_radius": POSITIVE, "val_places": NON_NEGATIVE_INT, "margin": POSITIVE, "num_negatives": COUNT,
    "negative_samples": COUNT, "cache_refresh": COUNT, "cache_memmap_mb": NON_NEGATIVE, "partial_database": COUNT,
    "lr": POSITIVE, "lr_step": COUNT, "lr_gamma": Limit(0, 1, low_open=True), "momentum": FRACTION,
    "weight_decay": NON_NEGATIVE, "batch_tuples": COUNT, "epochs": COUNT, "epoch_queries": COUNT,
    "whitening_dim": COUNT, "seed": NON_NEGATIVE_INT, "batch_size": COUNT, "workers": NON_NEGATIVE_INT,
    "checkpoint_every": COUNT,
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (the dataset aside); saved resolved in the run folder.

    The defaults are the paper's: positives within 10 m, negatives beyond 25 m, margin 0.1, the 10 hardest of
    1000 sampled negatives, SGD at lr 1e-4 halved every 5 epochs.

    Examples:
        >>> config = TrainConfig()
        >>> config.pos_radius, config.neg_radius, config.margin, config.num_negatives, config.negative_samples
        (10.0, 25.0, 0.1, 10, 1000)
        >>> config.lr, config.lr_step, config.lr_gamma
        (0.0001, 5, 0.5)
        >>> model_config = TrainConfig(backbone="vgg16").model_config  # the model it trains
        >>> model_config.backbone, model_config.pool, model_config.num_clusters
        ('vgg16', 'netvlad', 64)
    """

    # model
    backbone: str = "mobilenet_v2"
    num_clusters: int = 64
    parametrization: str = "official"
    pretrained: bool = True
    resize: str = "longest"
    size: tuple[int, ...] = (640,)
    fast_decode: bool = False  # decode JPEGs at reduced scale before the resize (faster; the model keeps it)
    train_from: int | None = None  # None: the backbone's default (layers below conv5 frozen for VGG16)
    init_model: str | None = None  # start from this checkpoint instead (e.g. from `netvlad cluster`)
    # cluster initialisation
    cluster_descriptors: int = 50_000
    cluster_per_image: int = 100
    cluster_images: int = 500
    alpha_average: str = "geometric"  # α as the official code ("geometric" ratio mean = 100) or "arithmetic"
    # ground truth (metres)
    pos_radius: float = POSITIVE_RADIUS_M  # potential positives within
    neg_radius: float = NEGATIVE_RADIUS_M  # definite negatives beyond
    min_positive_distance: float | None = None  # positives closer are trivial; None: 1 m (official), 0 sequences
    # ambiguous training images (netvlad.train.ambiguous), excluded from training (never from validation); None: off
    exclude_dark_below: float | None = None  # mean grey level 0–255 (tunnels, night)
    exclude_duplicates_above: float | None = None  # pixel correlation with an image beyond neg_radius (stops)
    val_radius: float = EVAL_RADIUS_M
    val_places: int = 0  # hold out the last N database images and queries for validation
    # loss and mining
    margin: float = 0.1
    # ÷ violating triplets in the batch, as the official code: the step the paper's lr 1e-4 was set for (sum: ~10×)
    loss_normalization: str = "violating_mean"
    num_negatives: int = 10
    negative_samples: int = 1000
    cache_refresh: int = 1000  # queries between cache refreshes; doubles each time the lr halves
    cache_dtype: str = "float16"
    cache_memmap_mb: float = 1024.0  # caches larger than this live in a memory-mapped file in the run folder
    mining: str = "full"  # "partial": mine within a random database subset (DVGB), for sets too large to cache
    partial_database: int = 5000
    # optimisation
    optimizer: str = "sgd"  # a name in netvlad.train.optim.OPTIMIZERS
    scheduler: str = "step"  # a name in netvlad.train.optim.SCHEDULERS
    lr: float = 1e-4
    lr_step: int = 5  # epochs between lr decays
    lr_gamma: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 1e-3
    batch_tuples: int = 4
    epochs: int = 30
    epoch_queries: int | None = None  # train on at most this many queries per epoch (short runs)
    whitening_dim: int | None = None  # fit PCA whitening to this size at the end
    channels_last: bool = True  # NHWC convolutions in training steps: faster on CPU (same maths, not bit for bit)
    precompute_frozen: bool = True  # compute the frozen stages' output once per image (resize="fixed" only)
    # bookkeeping
    seed: int = 0
    batch_size: int = 8  # images per forward pass when caching and validating
    workers: int = 0
    engine: str = "torch"  # cache refresh and validation: torch, onnxruntime (weights exported at each), or auto
    checkpoint_every: int = 25  # batches between resumable checkpoints (also after every cache refresh)
    tensorboard: bool = True

    def __post_init__(self) -> None:
        for name, choices in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS), ("mining", MINING_MODES),
                              ("alpha_average", ALPHA_AVERAGES), ("loss_normalization", LOSS_NORMALIZATIONS),
                              ("cache_dtype", ("float16", "float32"))):
            if getattr(self, name) not in choices:
                raise BadInputError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            for item in value if isinstance(value, tuple | list) else (value,):
                if item is not None:
                    limit.check(name, item)
        ENGINES.get(self.engine)  # an unknown engine: one line listing them
        if self.pos_radius > self.neg_radius:
            raise BadInputError(f"need pos_radius ≤ neg_radius, got {self.pos_radius} and {self.neg_radius}")
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        Preprocessing(resize=self.resize, size=self.size)  # validates resize/size

    @property
    def model_config(self) -> ModelConfig:
        """The PlaceModel this config trains."""
        return ModelConfig(backbone=self.backbone, pool="netvlad", num_clusters=self.num_clusters,
                           parametrization=self.parametrization, train_from=self.train_from,
                           preprocessing=Preprocessing(resize=self.resize, size=self.size,
                                                       fast_decode=self.fast_decode))

    @property
    def cluster_config(self) -> ClusterConfig:
        from netvlad.extract.clusters import ClusterConfig

        return ClusterConfig(num_descriptors=self.cluster_descriptors, per_image=self.cluster_per_image,
                             num_images=self.cluster_images, seed=self.seed, ratio_average=self.alpha_average)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a flat mapping; unknown keys are an error naming ``source``, not silently ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise BadInputError(f"{source}: unknown training option(s) {unknown}; the options are TrainConfig's "
                                "fields",
                                hint="`netvlad train --help` lists them")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        except BadInputError as error:
            raise BadInputError(f"{source}: {error}") from None
        except TypeError as error:  # a value of the wrong type, e.g. a number compared with a string
            raise BadInputError(f"{source}: an option has a value of the wrong type ({error})") from None


def field_types() -> dict[str, Any]:
    """Resolved type of each TrainConfig field (for building command-line flags)."""
    return typing.get_type_hints(TrainConfig)


def read_config_file(path: Path | str) -> dict[str, Any]:
    """A flat mapping of options from a ``.yaml``/``.yml`` or ``.toml`` file; BadInputError naming it otherwise.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = Path(folder.name) / "train.yaml"
        >>> _ = path.write_text("{backbone: vgg16, lr: 1.0e-4, epochs: 5}")  # or one option per line
        >>> options = read_config_file(path)
        >>> options
        {'backbone': 'vgg16', 'lr': 0.0001, 'epochs': 5}
        >>> TrainConfig.from_dict(options).model_config.backbone
        'vgg16'
        >>> folder.cleanup()
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    expected = "expected a YAML or TOML mapping of option: value"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: not a text file; {expected}", path=path) from None
    if not text.strip():
        raise BadInputError(f"{path}: config file is empty; {expected}", path=path)
    try:
        data = _read_toml(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:  # tomllib.TOMLDecodeError is a ValueError
        reason = " ".join(str(error).split())
        raise BadInputError(f"{path}: cannot parse config ({reason}); {expected}", path=path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: {expected}, got a {type(data).__name__}", path=path)
    options = {str(k).replace("-", "_"): v for k, v in data.items()}
    return {k: _number(v) if k in LIMITS else v for k, v in options.items()}


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string: give numeric-looking strings their number."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def _read_toml(text: str) -> dict:
    try:
        import tomllib  # Python ≥ 3.11
    except ModuleNotFoundError:
        raise BadInputError("TOML configs need Python ≥ 3.11; use YAML instead") from None
    return tomllib.loads(text)


def write_config(config: TrainConfig, path: Path | str) -> Path:
    """Write the resolved config as YAML."""
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
