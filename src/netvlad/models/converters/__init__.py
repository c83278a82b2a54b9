"""Converters from other NetVLAD implementations' files to our PlaceModel: one module per source format.

Examples:
    >>> conversion = convert("vd16_pitts30k_conv5_3_vlad_preL2_intra_white_struct.mat")  # doctest: +SKIP
    >>> save_model(conversion.model, "pitts30k.safetensors", extra=conversion.provenance)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from netvlad.errors import BadInputError

# Importing a converter module registers it.
from netvlad.models.converters import matlab, patchnetvlad, pytorch_netvlad  # noqa: F401
from netvlad.models.converters.base import (
    Conversion,
    Converter,
    ConvertOptions,
    get_converter,
    list_converters,
    load_torch_checkpoint,
    register_converter,
)

__all__ = [
    "Conversion", "ConvertOptions", "Converter", "convert", "detect_format", "get_converter", "list_converters",
    "load_torch_checkpoint", "register_converter",
]


def _require_file(path: Path) -> None:
    """Raise a one-line error unless ``path`` is an existing file (a folder is named as such)."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give the model file inside it (.mat, .pth.tar or .pth)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")


def detect_format(path) -> str:
    """Name of the registered format that recognises the file at ``path``; a clear error when none does."""
    path = Path(path)
    _require_file(path)
    for name in list_converters():
        if get_converter(name).detect(path):
            return name
    raise BadInputError(f"{path}: not recognised as any of {', '.join(list_converters())}; name the format "
                        "(source=NAME), which also gives a precise error", path=path, hint="--from NAME")


def convert(path, source: str | None = None, options: ConvertOptions | None = None) -> Conversion:
    """Convert the file at ``path`` (format ``source``, detected when None) to a PlaceModel."""
    path = Path(path)
    _require_file(path)
    name = source or detect_format(path)
    return get_converter(name).convert(path, options or ConvertOptions())
