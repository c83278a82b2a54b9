"""Converters from other NetVLAD implementations' files to our PlaceModel: one module per source format.

Examples:
    >>> conversion = convert("vd16_pitts30k_conv5_3_vlad_preL2_intra_white_struct.mat")  # doctest: +SKIP
    >>> save_model(conversion.model, "pitts30k.safetensors", extra=conversion.provenance)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from netvlad._lazy import lazy_exports
from netvlad.errors import BadInputError
from netvlad.registry import Registry

if TYPE_CHECKING:
    from netvlad.models.converters.base import Conversion, ConvertOptions

# The source formats, declared here so ``netvlad convert --help`` lists them without importing torch: each module
# defines its format with ``@register_converter`` (``netvlad.models.converters.base``), imported on first look-up.
CONVERTERS: Registry = Registry("source format", known="known")

for _name, _module, _help in (
    ("matlab", "matlab", "official MATLAB/MatConvNet NetVLAD .mat (vd16 + vlad/vladv2 + WPCA), struct layout"),
    ("patchnetvlad", "patchnetvlad", "QVPR/Patch-NetVLAD *_WPCA<P>.pth.tar (VGG16 + NetVLAD + WPCA 1×1 conv)"),
    ("pytorch-netvlad", "pytorch_netvlad", "Nanne/pytorch-NetVlad checkpoint.pth.tar (VGG16/AlexNet + NetVLAD)"),
):
    CONVERTERS.declare(_name, f"netvlad.models.converters.{_module}", _help)

__getattr__, __dir__, _ = lazy_exports(__name__, {"netvlad.models.converters.base": (
    "Conversion", "ConvertOptions", "Converter", "get_converter", "list_converters", "load_torch_checkpoint",
    "register_converter")})
__all__ = ["CONVERTERS", "Conversion", "ConvertOptions", "Converter", "convert", "detect_format", "get_converter",
           "list_converters", "load_torch_checkpoint", "register_converter"]


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
    for name in CONVERTERS.names():
        if CONVERTERS.get(name).detect(path):
            return name
    raise BadInputError(f"{path}: not recognised as any of {', '.join(CONVERTERS.names())}; name the format "
                        "(source=NAME), which also gives a precise error", path=path, hint="--from NAME")


def convert(path, source: str | None = None, options: ConvertOptions | None = None) -> Conversion:
    """Convert the file at ``path`` (format ``source``, detected when None) to a PlaceModel."""
    from netvlad.models.converters.base import ConvertOptions, get_converter

    path = Path(path)
    _require_file(path)
    name = source or detect_format(path)
    return get_converter(name).convert(path, options or ConvertOptions())
