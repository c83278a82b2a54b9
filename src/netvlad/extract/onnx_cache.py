"""The cached ONNX export of a model: one file per model fingerprint and input policy, checked before reuse.

An export is written once to the cache folder (``$NETVLAD_CACHE``, else ``$XDG_CACHE_HOME/netvlad``, else
``~/.cache/netvlad``, then ``onnx/``) as ``<fingerprint>-<tag>.onnx`` beside a ``.json`` record of what it holds:
the model's fingerprint, the input policy (resize, size, fixed or dynamic height and width, uint8 or float images),
the opset, torch's version and the file's SHA-256 (and, for an export that also returns the local feature maps of
the first backbone stages, how many stages). A file whose record is missing, unreadable or names anything
else (stale, foreign, truncated) is exported again, never used. ``persist=False`` exports into a temporary folder
that is removed (weights that change between calls, as a training run's refreshes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from netvlad.files import atomic_write, cache_root
from netvlad.models import PlaceModel
from netvlad.models.export import export_onnx
from netvlad.models.weights import sha256_of

logger = logging.getLogger(__name__)

T = TypeVar("T")
OPSET = 17
FORMAT = 1  # bump when the exported graph changes for the same model


def cache_folder() -> Path:
    """The export folder: ``onnx/`` in :func:`netvlad.files.cache_root`."""
    return cache_root() / "onnx"


@dataclass(frozen=True)
class ExportKey:
    """What one export holds: the model (fingerprint), its input policy, the traced height × width (pixels),
    fixed when ``dynamic`` is false, whether its images are ``uint8`` bytes or floats in [0, 1], and ``cut``: the
    number of backbone stages whose feature maps it returns beside the descriptors (None: descriptors alone)."""

    fingerprint: str
    resize: str
    size: tuple[int, ...]
    height: int
    width: int
    dynamic: bool
    uint8: bool = False
    cut: int | None = None

    def record(self) -> dict:
        """The fields a cached file must match (``input`` only for uint8, ``local`` only with ``cut``: a plain
        float export's record, and so its file name, is the one it always had)."""
        record = {"fingerprint": self.fingerprint, "resize": self.resize, "size": list(self.size),
                  "shape": "dynamic" if self.dynamic else [self.height, self.width], "opset": OPSET,
                  "format": FORMAT, "torch": torch.__version__.split("+")[0]}
        if self.uint8:
            record["input"] = "uint8"
        if self.cut is not None:
            record["local"] = self.cut
        return record

    @property
    def stem(self) -> str:
        """``<fingerprint>-<8 hex digits of the rest>``."""
        tag = hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.fingerprint}-{tag}"


def cached_file(folder: Path, key: ExportKey) -> Path | None:
    """The export of ``key`` in ``folder`` when its record matches it and the file's SHA-256; None otherwise."""
    onnx, meta = folder / f"{key.stem}.onnx", folder / f"{key.stem}.json"
    if not onnx.is_file() and not meta.is_file():
        return None
    try:
        record = json.loads(meta.read_text(encoding="utf-8"))
        ok = {k: record.get(k) for k in key.record()} == key.record() and record.get("sha256") == sha256_of(onnx)
    except (OSError, ValueError):
        ok = False
    if not ok:
        logger.info("cached export %s is stale or foreign (its record does not match the model); exporting again",
                    onnx)
        return None
    return onnx


def write_export(model: PlaceModel, folder: Path, key: ExportKey, accept: Callable[[Path], T]) -> T:
    """Export ``model`` for ``key`` into ``folder``; ``accept(path)`` checks it (raising refuses it), and only then
    is its record written, so a refused or half-written export is never reused. Returns what ``accept`` returned."""
    onnx, meta = folder / f"{key.stem}.onnx", folder / f"{key.stem}.json"
    meta.unlink(missing_ok=True)
    _export(model, onnx, key)
    try:
        accepted = accept(onnx)
    except BaseException:
        onnx.unlink(missing_ok=True)
        raise
    record = key.record() | {"sha256": sha256_of(onnx)}
    atomic_write(meta, lambda tmp: tmp.write_text(json.dumps(record, indent=1), encoding="utf-8"))
    logger.info("exported the model to %s (%s)", onnx, "dynamic size" if key.dynamic else
                f"{key.height}×{key.width}")
    return accepted


def _export(model: PlaceModel, path: Path, key: ExportKey) -> None:
    with torch.inference_mode(False), torch.no_grad():  # tracing needs ordinary tensors, even inside extraction
        export_onnx(model, path, key.height, key.width, opset=OPSET, dynamic_size=key.dynamic, uint8=key.uint8,
                    cut=key.cut)


def export_bytes(model: PlaceModel, key: ExportKey) -> bytes:
    """The export of ``key`` as bytes, written nowhere that outlives the call."""
    with tempfile.TemporaryDirectory(prefix="netvlad-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        _export(model, path, key)
        return path.read_bytes()
