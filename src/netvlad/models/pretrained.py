"""Published NetVLAD models of other implementations: a table, a cache, download and conversion on first use.

Examples:
    >>> model = load_pretrained("vgg16-netvlad-pitts30k")  # the official MATLAB model  # doctest: +SKIP
    >>> model = load_pretrained("pittsburgh_WPCA4096.pth.tar")  # any file convert reads  # doctest: +SKIP

Files live in :func:`pretrained_dir` (``$NETVLAD_PRETRAINED_DIR``, else ``$TORCH_HOME/hub/netvlad``): the
downloaded original, and beside it the converted ``<name>.safetensors`` that later calls load directly.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from netvlad.errors import BadInputError
from netvlad.models.converters import convert
from netvlad.models.io import FORMAT, load, save_model
from netvlad.models.place_model import PlaceModel
from netvlad.models.published import PUBLISHED, PublishedModel  # noqa: F401 - re-exported
from netvlad.models.weights import WeightsUnavailableError, sha256_of

logger = logging.getLogger(__name__)


def list_pretrained() -> list[str]:
    """Names of the known published models."""
    return sorted(PUBLISHED)


def pretrained_dir() -> Path:
    """Where published files and their conversions are kept (``$NETVLAD_PRETRAINED_DIR`` overrides)."""
    return Path(os.environ.get("NETVLAD_PRETRAINED_DIR") or Path(torch.hub.get_dir()) / "netvlad")


def load_pretrained(name_or_path, allow_download: bool | None = None) -> PlaceModel:
    """A known published model by name, or any netvlad checkpoint / convertible file by path."""
    path = Path(name_or_path)
    if path.is_file():
        return load(path) if _is_netvlad_checkpoint(path) else convert(path).model
    if str(name_or_path) not in PUBLISHED:
        raise ValueError(f"{name_or_path}: neither a file nor a known published model; known: "
                         f"{', '.join(list_pretrained())}")
    entry = PUBLISHED[str(name_or_path)]
    converted = pretrained_dir() / f"{entry.name}.safetensors"
    if converted.is_file():
        return load(converted)
    original = fetch(entry, allow_download)
    conversion = convert(original, entry.source)
    _check_structure(conversion.model, entry, original)
    save_model(conversion.model, converted, extra={**conversion.provenance, "published_as": entry.name,
                                                   "url": entry.url})
    logger.info("converted %s to %s", original, converted)
    return conversion.model


def fetch(entry: PublishedModel, allow_download: bool | None = None) -> Path:
    """Path of a verified local copy of ``entry``'s file: the cache, else a download, else a clear error."""
    target = pretrained_dir() / entry.filename
    if not target.is_file():
        if allow_download is None:
            allow_download = os.environ.get("NETVLAD_OFFLINE", "0") not in ("1", "true", "yes")
        if not allow_download:
            raise WeightsUnavailableError(_where_to_put(entry, target, "downloads are disabled (NETVLAD_OFFLINE=1)"))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(entry.url, str(target), progress=False)
        except Exception as error:  # noqa: BLE001 - any network failure means "get it by hand"
            reason = " ".join(f"the download failed ({type(error).__name__}: {error})".split())
            # from None: the fix is the whole story; the network library's own traceback would bury it
            raise WeightsUnavailableError(_where_to_put(entry, target, reason)) from None
    if entry.sha256 is not None:
        actual = sha256_of(target)
        if actual != entry.sha256:
            raise ValueError(f"{target}: SHA-256 {actual} differs from the published {entry.sha256} "
                             "(a different or corrupt file); delete it and try again")
    else:
        logger.info("%s: no published SHA-256 to check; verifying its structure instead", target)
    return target


def _where_to_put(entry: PublishedModel, target: Path, reason: str) -> str:
    return (f"published model {entry.name} is not available: {reason}; download {entry.url} and save it as "
            f"{target} (or set NETVLAD_PRETRAINED_DIR), or convert any copy with "
            f"netvlad.models.converters.convert and save it as {target.with_name(entry.name + '.safetensors')}"
            + (f" [{entry.note}]" if entry.note else ""))


def _check_structure(model: PlaceModel, entry: PublishedModel, path: Path) -> None:
    """The converted file must have the published shape: K clusters and the whitening size."""
    found = (model.config.num_clusters, model.config.whitening_dim)
    wanted = (entry.num_clusters or found[0], entry.whitening_dim)
    if found != wanted:
        raise BadInputError(f"{path}: holds K={found[0]}, whitening {found[1]}; {entry.name} is published with "
                         f"K={wanted[0]}, whitening {wanted[1]}: a different file")


def _is_netvlad_checkpoint(path: Path) -> bool:
    """True for our safetensors checkpoints (their JSON header's metadata names the format)."""
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if not 2 <= size <= 100_000_000:
            return False
        try:
            header = json.loads(handle.read(size))
        except (UnicodeDecodeError, ValueError):
            return False
    return isinstance(header, dict) and (header.get("__metadata__") or {}).get("format") == FORMAT
