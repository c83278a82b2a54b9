"""Frozen configs of a place-recognition model and of the preprocessing it expects."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from netvlad.errors import BadInputError
from netvlad.limits import COUNT, NUM_CLUSTERS

ResizeMode = Literal["none", "fixed", "longest"]


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared for a model; stored in its checkpoint.

    The loader yields RGB in [0, 1] resized by ``resize`` (``"none"``: unchanged; ``"fixed"``: to
    ``size`` = (height, width) pixels; ``"longest"``: longest side ≤ ``size[0]`` keeping aspect) with PIL's
    antialiased bilinear filter after a full decode, as torchvision's ``Resize`` prepares the reference models'
    input; ``fast_decode`` lets a JPEG decode at reduced scale (1/2, 1/4 or 1/8) before that resize: faster, with
    slightly different pixels. The model itself computes (x·value_scale − mean) / std, so exports include it.
    ``mean``/``std`` of None mean "the backbone's own" (ImageNet for torchvision models).

    Examples:
        >>> Preprocessing(resize="fixed", size=(480, 640)).size
        (480, 640)
        >>> Preprocessing(resize="fixed", size=(480,))
        Traceback (most recent call last):
        ...
        netvlad.errors.BadInputError: resize='fixed' needs size=(height, width), got (480,)
    """

    resize: ResizeMode = "longest"
    size: tuple[int, ...] = (640,)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    value_scale: float = 1.0  # 255 for MatConvNet models, which take 0–255 RGB
    fast_decode: bool = False  # a speed option: the reference pipelines decode in full

    def __post_init__(self) -> None:
        if self.resize not in ("none", "fixed", "longest"):
            raise BadInputError(f"resize must be none, fixed or longest, got {self.resize!r}")
        if self.resize == "fixed" and len(self.size) != 2:
            raise BadInputError(f"resize='fixed' needs size=(height, width), got {self.size}", hint="--size H W")
        if self.resize == "longest" and len(self.size) != 1:
            raise BadInputError(f"resize='longest' needs size=(longest side,), got {self.size}", hint="--size S")
        if not isinstance(self.fast_decode, bool):
            raise BadInputError(f"fast_decode must be true or false, got {self.fast_decode!r}")
        for side in self.size:
            COUNT.check("size (pixels)", side)
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))


@dataclass(frozen=True)
class ModelConfig:
    """A PlaceModel: backbone name, pooling (netvlad|gem|max|avg) and optional whitening.

    Examples:
        >>> config = ModelConfig(backbone="vgg16", num_clusters=64, whitening_dim=4096)  # the paper's best model
        >>> config.preprocessing
        Preprocessing(resize='longest', size=(640,), mean=None, std=None, value_scale=1.0, fast_decode=False)
        >>> ModelConfig(pool="gem", preprocessing={"resize": "fixed", "size": [240, 320]}).preprocessing.size
        (240, 320)
    """

    backbone: str = "mobilenet_v2"
    pool: str = "netvlad"
    num_clusters: int = 64
    parametrization: str = "official"
    normalize_input: bool = True
    netvlad_bias: bool | None = None
    gem_p: float = 3.0
    whitening_dim: int | None = None
    train_from: int | None = None  # None: the backbone's default (e.g. conv5 for VGG16)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    def __post_init__(self) -> None:
        NUM_CLUSTERS.check("num_clusters", self.num_clusters)
        if self.whitening_dim is not None:
            COUNT.check("whitening_dim", self.whitening_dim)
        if isinstance(self.preprocessing, dict):  # as a hub call or a config file spells it
            try:
                pre = {k: tuple(v) if isinstance(v, list) else v for k, v in self.preprocessing.items()}
                object.__setattr__(self, "preprocessing", Preprocessing(**pre))
            except TypeError as error:
                raise BadInputError(f"preprocessing: {error}; its keys are resize, size, mean, std, value_scale"
                                    ) from None
        if not isinstance(self.preprocessing, Preprocessing):
            raise BadInputError(f"preprocessing must be a Preprocessing or a dict of its fields, got "
                                f"{type(self.preprocessing).__name__}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict (as written by :meth:`to_json`); unknown keys are an error, not ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**data)
