"""What every converter shares: the registry, safe loading of ``.pth.tar`` files, and model assembly."""

from __future__ import annotations

import logging
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from netvlad.errors import BadInputError
from netvlad.models.backbone_specs import get_backbone_spec
from netvlad.models.converters import CONVERTERS
from netvlad.models.model_config import ModelConfig
from netvlad.models.place_model import PlaceModel
from netvlad.models.weights import sha256_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertOptions:
    """What the user may state instead of letting the converter read it from the file.

    ``None`` means "read it from the file"; a stated value that contradicts the file is an error.
    """

    backbone: str | None = None
    num_clusters: int | None = None
    vladv2: bool | None = None  # True: assignment with a bias ("paper" parametrisation)
    whitening: bool = True  # False: drop the file's whitening layer, keep raw VLAD


@dataclass(frozen=True)
class Conversion:
    """A converted model and the provenance to store in its checkpoint."""

    model: PlaceModel
    provenance: dict[str, Any]


@dataclass(frozen=True)
class Converter:
    """One source format: ``detect(path) -> bool`` and ``convert(path, options) -> Conversion``."""

    name: str
    description: str
    detect: Callable[[Path], bool]
    convert: Callable[[Path, ConvertOptions], Conversion]


_REGISTRY = CONVERTERS  # declared in netvlad.models.converters (names and help without torch)


def register_converter(name: str, description: str, detect: Callable[[Path], bool]) -> Callable:
    """Decorator: register ``convert(path, options)`` under ``name`` with its ``detect``."""

    def wrap(convert: Callable[[Path, ConvertOptions], Conversion]):
        _REGISTRY.add(name, Converter(name, description, detect, convert), description)
        return convert

    return wrap


def list_converters() -> list[str]:
    """Names of the registered source formats."""
    return _REGISTRY.names()


def get_converter(name: str) -> Converter:
    """The converter registered as ``name``; a clear error listing the registered ones otherwise."""
    return _REGISTRY.get(name)


# --- safe loading of PyTorch checkpoints -------------------------------------------------------------------

# pytorch-NetVlad stores its recalls and best score as numpy float64 scalars: reconstructing a scalar from a
# dtype and raw bytes runs no code, so these (and only these) are allowed besides torch's own tensor types.
_NUMPY_NUMERIC_DTYPES = [cls for cls in vars(np.dtypes).values() if isinstance(cls, type)
                         and issubclass(getattr(cls, "type", object), (np.number, np.bool_))]
_NUMPY_DATA_GLOBALS = [
    np.dtype,
    *_NUMPY_NUMERIC_DTYPES,
    np._core.multiarray.scalar,
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),  # as written by numpy 1.x
]


READ_ERRORS = (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, IndexError, TypeError,
               AttributeError, struct.error, UnicodeDecodeError, SafetensorError)


def is_torch_file(path: Path) -> bool:
    """True for torch.save's zip format or its legacy pickle format (by the first bytes)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_torch_checkpoint(path: Path) -> Any:
    """Load a ``.pth``/``.pth.tar`` with ``weights_only=True``; refuse anything needing arbitrary unpickling."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    mmap = zipfile.is_zipfile(path)  # zip checkpoints map lazily: cheap to inspect, even at 600 MB
    try:
        with torch.serialization.safe_globals(_NUMPY_DATA_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights only" in str(error).lower() or "unsupported global" in str(error).lower():
            raise BadInputError(
                f"{path}: refusing to load: this checkpoint needs arbitrary unpickling ({_unsafe_globals(path)}), "
                "which can run code from the file's author; only tensors, numbers, strings and containers are "
                "accepted. If you trust the author, re-save just its state_dict of plain tensors and convert that",
                path=path) from None
        raise BadInputError(f"{path}: not a readable PyTorch checkpoint ({reason})", path=path) from None
    except READ_ERRORS as error:  # what torch.load raises on a damaged, truncated or foreign file
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        raise BadInputError(f"{path}: not a readable PyTorch checkpoint ({reason}); expected a .pth/.pth.tar "
                            "saved by torch.save", path=path) from None


def _unsafe_globals(path: Path) -> str:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - only used to word the message
        return "objects other than tensors"
    return "it references " + ", ".join(names[:5]) if names else "objects other than tensors"


def state_dict_of(checkpoint: Any, path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a training checkpoint (or the dict itself), without DataParallel's ``module.``."""
    if not isinstance(checkpoint, dict):
        raise BadInputError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}", path=path)
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInputError(f"{path}: no field 'state_dict' holding tensors (keys: {sorted(checkpoint)[:8]})")
    # DataParallel wraps sub-modules: 'encoder.module.0.weight', or 'module.encoder.0.weight' for the whole model.
    return {".".join(part for part in key.split(".") if part != "module"): value for key, value in state.items()}


# --- shared maths and assembly --------------------------------------------------------------------------

def eigenvalues_from_whitening(weight: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """λ of a PCA whitening W = diag(1/√(λ+ε))·Uᵀ, recovered from its row norms: ``(out, in)`` -> ``(out,)``."""
    norms_sq = torch.cat([rows.to(torch.float64).pow(2).sum(1) for rows in weight.split(256)])  # 32768-wide rows
    return (1.0 / norms_sq.clamp_min(1e-300) - eps).clamp_min(0).to(torch.float32)


def build_model(config: ModelConfig, tensors: dict[str, torch.Tensor], path: Path,
                origin: Callable[[str], str] = str) -> PlaceModel:
    """A PlaceModel of ``config`` holding exactly ``tensors``; ``origin`` names our keys in the source's terms."""
    model = _empty_model(config)
    expected = model.state_dict()
    missing = [origin(k) for k in sorted(set(expected) - set(tensors))]
    unexpected = [origin(k) for k in sorted(set(tensors) - set(expected))]
    if missing:
        raise BadInputError(f"{path}: no field '{missing[0]}' ({len(missing)} missing in all) for a "
                         f"{config.backbone} model" + (f"; unexpected: {unexpected[:3]}" if unexpected else ""))
    if unexpected:
        raise BadInputError(f"{path}: fields {unexpected[:4]} do not belong to a {config.backbone} model")
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise BadInputError(f"{path}: {name} has shape {tuple(value.shape)}, a {config.backbone} model "
                             f"needs {tuple(expected[name].shape)}")
    model.load_state_dict({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()})
    return model.eval()


def _empty_model(config: ModelConfig) -> PlaceModel:
    """PlaceModel with uninitialised parameters (VGG16's random init alone takes seconds; all are overwritten)."""
    with torch.device("meta"):
        model = PlaceModel(config, pretrained=False)
    model = model.to_empty(device="cpu")
    unset = {name for name, _ in model.named_buffers()} - set(model.state_dict()) - {"mean", "std"}
    if unset:  # a buffer we would not know how to fill: take the slow, fully initialised path
        return PlaceModel(config, pretrained=False)
    spec, pre = get_backbone_spec(config.backbone), config.preprocessing
    # The two non-persistent buffers are the input normalisation constants, set as PlaceModel sets them.
    model.mean.copy_(torch.tensor(pre.mean if pre.mean is not None else spec.mean).view(1, 3, 1, 1))
    model.std.copy_(torch.tensor(pre.std if pre.std is not None else spec.std).view(1, 3, 1, 1))
    return model


def provenance(path: Path, source: str, **details: Any) -> dict[str, Any]:
    """What a converted checkpoint records about where it came from."""
    return {"converted_from": {"format": source, "file": Path(path).name, "sha256": sha256_of(Path(path)), **details}}
