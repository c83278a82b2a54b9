"""Self-describing checkpoints: config as JSON metadata + tensors in safetensors. Nothing is unpickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from netvlad.files import atomic_write
from netvlad.models.config import ModelConfig
from netvlad.models.place_model import PlaceModel

FORMAT = "netvlad-checkpoint"
VERSION = "1"


def save_model(model: PlaceModel, path, extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` to ``path`` (safetensors) atomically; ``extra`` is JSON stored beside the config."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    metadata = {"format": FORMAT, "version": VERSION, "config": model.config.to_json(),
                "extra": json.dumps(extra or {})}
    return atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_checkpoint(path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Config, tensors and extra metadata of a netvlad checkpoint; a one-line error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path}: not a netvlad checkpoint ({error}); "
                         "convert other programs' files with `netvlad convert`") from error
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: a safetensors file but not a netvlad checkpoint (no format={FORMAT!r}); "
                         "convert it with `netvlad convert`")
    config = ModelConfig.from_dict(json.loads(metadata["config"]))
    return config, tensors, json.loads(metadata.get("extra", "{}"))


def load(path, map_location: str | torch.device = "cpu") -> PlaceModel:
    """Rebuild the PlaceModel saved at ``path`` (no pretrained weights are fetched)."""
    config, tensors, _ = read_checkpoint(path)
    model = PlaceModel(config, pretrained=False)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: tensors do not match the config (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}); the file is corrupt or from another version")
    return model.to(map_location).eval()
