"""PlaceModel: normalisation → backbone → pooling (→ PCA whitening) → global descriptor."""

from __future__ import annotations

import dataclasses
import hashlib

import torch
from torch import nn

from netvlad.hashing import raw_bytes
from netvlad.models.backbone_specs import get_backbone_spec
from netvlad.models.backbones import Backbone
from netvlad.models.model_config import ModelConfig
from netvlad.models.pools import POOLS
from netvlad.nn import PCAWhitening


class PlaceModel(nn.Module):
    """Images ``(B, 3, H, W)`` RGB in [0, 1] -> global descriptors ``(B, output_dim)`` of unit L2 norm.

    Examples:
        >>> model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="gem"), pretrained=False)
        >>> model(torch.rand(2, 3, 224, 224)).shape
        torch.Size([2, 1280])
    """

    def __init__(self, config: ModelConfig, pretrained: bool = True, allow_download: bool | None = None) -> None:
        super().__init__()
        make_pool = POOLS.get(config.pool)  # BadInputError naming the registered poolings
        spec = get_backbone_spec(config.backbone)
        self.config = config
        pre = config.preprocessing
        mean = torch.tensor(pre.mean if pre.mean is not None else spec.mean)
        std = torch.tensor(pre.std if pre.std is not None else spec.std)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)
        self.backbone = Backbone(spec, pretrained=pretrained, allow_download=allow_download)
        if config.train_from is not None:
            self.backbone.set_train_from(config.train_from)
        self.pool = make_pool(config, spec.channels)
        self.whitening = (
            PCAWhitening(self.pool.output_dim, config.whitening_dim) if config.whitening_dim else None
        )

    @property
    def output_dim(self) -> int:
        """Length of the global descriptor."""
        return self.whitening.output_dim if self.whitening is not None else self.pool.output_dim

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(x·value_scale − mean) / std, the input convention recorded in the config."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images as (B, 3, H, W), got {tuple(images.shape)}")
        scale = self.config.preprocessing.value_scale
        scaled = images if scale == 1 else images * scale  # x·1 is x, bit for bit: one pass fewer in both engines
        return (scaled - self.mean) / self.std

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Local descriptors: ``(B, 3, H, W)`` -> ``(B, D, H/s, W/s)``."""
        return self.backbone(self.normalize(images))

    def pool_features(self, features: torch.Tensor) -> torch.Tensor:
        """Pooling and optional whitening of local features: -> ``(B, output_dim)``."""
        descriptors = self.pool(features)
        return self.whitening(descriptors) if self.whitening is not None else descriptors

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool_features(self.features(images))

    def set_whitening(self, whitening: PCAWhitening | None) -> None:
        """Attach (or remove) a fitted whitening; the config's ``whitening_dim`` follows."""
        if whitening is not None and whitening.in_dim != self.pool.output_dim:
            raise ValueError(f"whitening expects {whitening.in_dim}-D input, pooling gives {self.pool.output_dim}")
        self.whitening = whitening
        self.config = dataclasses.replace(self.config, whitening_dim=whitening.out_dim if whitening else None)

    def fingerprint(self) -> str:
        """16 hex digits identifying the config and every tensor value (equal models, equal prints)."""
        digest = hashlib.sha256(self.config.to_json().encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(raw_bytes(tensor))
        return digest.hexdigest()[:16]

