"""Keyed, checksummed tensor entries in a cache folder: what a model fits from images once (k-means centroids, a
patch whitening) and every later run on the same model and images reads back.

An entry is ``<folder>/<prefix><32 hex digits of SHA-256 over the key>.safetensors``: the tensors, the key as a
JSON record of what they were computed from, a few string fields, and a SHA-256 over all of them. It is written
atomically; on read, an entry whose record names anything else, or whose checksum, shapes or values are wrong, is
logged and ignored (the caller computes it again and the next write replaces it), never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from netvlad.files import atomic_write
from netvlad.hashing import raw_bytes

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


def entry_path(folder: Path | str, key: dict, prefix: str = "") -> Path:
    """The file of ``key``'s entry in ``folder``."""
    return Path(folder) / (prefix + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
                           + ".safetensors")


def entry_checksum(fields: list[str], tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over the length-prefixed ``fields`` in order, then each tensor's name, shape and bytes in name
    order."""
    digest = hashlib.sha256()
    parts = [field.encode() for field in fields]
    for name, tensor in sorted(tensors.items()):
        parts += [name.encode(), str(tuple(tensor.shape)).encode(), raw_bytes(tensor)]
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def write_entry(folder: Path | str, key: dict, kind: tuple[str, str], tensors: dict[str, torch.Tensor],
                fields: dict[str, str], prefix: str = "") -> Path:
    """Write ``tensors`` and string ``fields`` under ``key`` into ``folder`` atomically, tagged ``kind`` (format,
    version); returns the entry's path."""
    from safetensors.torch import save_file

    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    record = json.dumps(key, sort_keys=True)
    metadata = {"format": kind[0], "version": kind[1], "key": record, **fields,
                "sha256": entry_checksum([record, *fields.values()], tensors)}
    return atomic_write(entry_path(folder, key, prefix), lambda tmp: save_file(tensors, str(tmp), metadata))


def read_entry(folder: Path | str, key: dict, kind: tuple[str, str], fields: tuple[str, ...],
               check: Callable[[dict[str, torch.Tensor]], str | None], what: str, prefix: str = ""
               ) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """``(tensors, fields)`` of ``key``'s entry in ``folder`` when it is there and sound, else None. ``check``
    returns what is wrong with the tensors' names and shapes (None: nothing). A damaged or foreign entry is logged
    as ``what`` (e.g. "cached k-means centroids ... ; clustering again")."""
    from safetensors import SafetensorError, safe_open

    from netvlad.nn.functional import all_finite

    path = entry_path(folder, key, prefix)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        record, values = metadata["key"], {name: metadata[name] for name in fields}
        problem = (f"not a {kind[0]} file" if (metadata.get("format"), metadata.get("version")) != kind
                   else "its checksum does not match: a damaged file"
                   if entry_checksum([record, *values.values()], tensors) != metadata.get("sha256")
                   else "it was computed from something else" if json.loads(record) != json.loads(json.dumps(key))
                   else check(tensors) or ("it holds NaN or inf" if not all(all_finite(t)
                                                                            for t in tensors.values()) else None))
        if problem is None:
            return tensors, values
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
        problem = " ".join(f"{type(error).__name__}: {error}".split())[:200]
    logger.warning(what, path, problem)
    return None
