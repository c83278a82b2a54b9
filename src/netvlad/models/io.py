"""Self-describing checkpoints: config as JSON metadata + tensors in safetensors. Nothing is unpickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from netvlad.errors import BadInputError
from netvlad.files import atomic_write
from netvlad.models.model_config import ModelConfig
from netvlad.models.place_model import PlaceModel
from netvlad.nn.functional import all_finite

FORMAT = "netvlad-checkpoint"
VERSION = "1"


def save_model(model: PlaceModel, path, extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` to ``path`` (safetensors) atomically; ``extra`` is JSON stored beside the config.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> model = PlaceModel(ModelConfig(pool="gem"), pretrained=False)
        >>> path = save_model(model, f"{folder.name}/model.safetensors", extra={"epoch": 3})
        >>> path.name
        'model.safetensors'
        >>> folder.cleanup()
    """
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    metadata = {"format": FORMAT, "version": VERSION, "config": model.config.to_json(),
                "extra": json.dumps(extra or {})}
    return atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _not_a_checkpoint(path: Path, reason: str) -> BadInputError:
    return BadInputError(f"{path}: not a netvlad checkpoint ({reason}); expected a .safetensors file written by "
                         "netvlad (convert other programs' files with netvlad.models.converters.convert)",
                         path=path, hint="`netvlad convert FILE --out CKPT.safetensors` converts them")


def read_checkpoint(path, tensors: bool = True) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Config, tensors (none unless ``tensors``) and extra metadata of a netvlad checkpoint.

    Anything else (another format, a damaged or truncated file) raises :class:`BadInputError` naming the file.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = save_model(PlaceModel(ModelConfig(pool="gem"), pretrained=False), f"{folder.name}/model.safetensors",
        ...                   extra={"epoch": 3})
        >>> config, tensors, extra = read_checkpoint(path, tensors=False)
        >>> config.pool, tensors, extra
        ('gem', {}, {'epoch': 3})
        >>> folder.cleanup()
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            values = {key: handle.get_tensor(key) for key in handle.keys()} if tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:  # safetensors' errors on a bad file
        raise _not_a_checkpoint(path, " ".join(str(error).split())) from None
    if metadata.get("format") != FORMAT:
        raise _not_a_checkpoint(path, f"a safetensors file without format={FORMAT!r}")
    try:
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
        extra = json.loads(metadata.get("extra", "{}"))
    except (KeyError, TypeError, ValueError) as error:
        raise _not_a_checkpoint(path, f"its metadata is damaged: {' '.join(str(error).split())}") from None
    return config, values, extra


def check_checkpoint(path) -> ModelConfig:
    """The config of the checkpoint at ``path``, reading its header only: a cheap check before long work."""
    return read_checkpoint(path, tensors=False)[0]


def load(path, map_location: str | torch.device = "cpu") -> PlaceModel:
    """Rebuild the PlaceModel saved at ``path`` (no pretrained weights are fetched).

    Examples:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> model = PlaceModel(ModelConfig(num_clusters=8), pretrained=False).eval()
        >>> path = save_model(model, f"{folder.name}/model.safetensors")
        >>> images = torch.rand(1, 3, 64, 64)
        >>> torch.equal(load(path).eval()(images), model(images))
        True
        >>> folder.cleanup()
    """
    config, tensors, _ = read_checkpoint(path)
    try:
        model = PlaceModel(config, pretrained=False)
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except (KeyError, ValueError, RuntimeError) as error:  # unknown backbone, tensors of the wrong shape
        raise BadInputError(f"{path}: the checkpoint does not describe a model netvlad can build "
                            f"({' '.join(str(error).split())[:300]}); the file is damaged or from another version",
                            path=path) from None
    if missing or unexpected:
        raise BadInputError(f"{path}: tensors do not match the config (missing {missing[:3]}, unexpected "
                            f"{unexpected[:3]}); the file is damaged or from another version", path=path)
    bad = next((k for k, v in tensors.items() if not all_finite(v)), None)
    if bad is not None:
        raise BadInputError(f"{path}: tensor {bad} holds NaN or inf (a diverged training run, or a damaged file); "
                            "use an earlier checkpoint or train again", path=path)
    return model.to(map_location).eval()
