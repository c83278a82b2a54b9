"""Cached k-means centroids of an off-the-shelf NetVLAD: clustered once per backbone, K, input policy, sampled images
and seed, then reused by every command and library call that would cluster the same images again.

An entry is ``clusters/<key>.safetensors`` in the cache folder (:func:`netvlad.files.cache_root`): the NetVLAD
layer's tensors as the k-means set them, α, how many local descriptors the k-means ran on, the record of what it was
computed from (:func:`cluster_key`) and a SHA-256 over all of them. It is written atomically; on read, an entry
whose record names anything else, or whose checksum, shape or values are wrong, is logged and computed again, never
used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from netvlad.files import atomic_write, cache_root

if TYPE_CHECKING:
    import torch

    from netvlad.extract.clusters import ClusterConfig
    from netvlad.models import PlaceModel

logger = logging.getLogger(__name__)

FORMAT, VERSION = "netvlad-clusters", "1"


def cluster_cache_folder() -> Path:
    """The default folder of cached centroids: ``$NETVLAD_CLUSTER_CACHE``, else ``clusters/`` in
    :func:`netvlad.files.cache_root`."""
    if os.environ.get("NETVLAD_CLUSTER_CACHE"):
        return Path(os.environ["NETVLAD_CLUSTER_CACHE"]).expanduser()
    return cache_root() / "clusters"


def backbone_digest(model: PlaceModel) -> str:
    """16 hex digits identifying the backbone's weights (the part of the model that makes the local descriptors)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def image_identity(path: Path) -> str:
    """SHA-256 of an image file's bytes: a changed or replaced file differs, the same file anywhere is the same
    (frames a stream writes to a new temporary folder each run, a copied dataset). An image inside a ROS bag is
    identified by its message's type and serialised bytes (it is a message, not a file), never decoded here: the
    sampling decodes it once, for its descriptors."""
    from netvlad.data.bags.images import bag_message, is_bag_image

    if is_bag_image(path):
        msgtype, raw = bag_message(path)
        digest = hashlib.sha256(f"{msgtype} {len(raw)} ".encode())
        digest.update(raw)
        return digest.hexdigest()
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cluster_key(model: PlaceModel, paths: Sequence[Path | str], sampled: Sequence[Path], config: ClusterConfig,
                skip_bad: bool) -> dict:
    """What a k-means result depends on: the model config (backbone, K, parametrisation, input policy), the
    backbone's weights, the sampling config and seed, the number of candidate ``paths`` and the identity of the
    ``sampled`` images the descriptors come from (their content, in order)."""
    images = hashlib.sha256(json.dumps([image_identity(p) for p in sampled]).encode()).hexdigest()
    return {"model": json.loads(model.config.to_json()), "backbone": backbone_digest(model),
            "sampling": asdict(config), "candidates": len(paths), "images": images, "skip_bad": skip_bad}


@dataclass(frozen=True)
class CachedClusters:
    """A k-means result: the NetVLAD layer's tensors (centroids, assignment weights), α, and the number of local
    descriptors the k-means ran on."""

    tensors: dict[str, torch.Tensor]
    alpha: float
    descriptors: int


def _entry(folder: Path, key: dict) -> Path:
    return folder / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32] + ".safetensors")


def _checksum(record: str, alpha: str, descriptors: str, tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    parts = [record.encode(), alpha.encode(), descriptors.encode()]
    for name, tensor in sorted(tensors.items()):
        parts += [name.encode(), str(tuple(tensor.shape)).encode(), tensor.contiguous().numpy().tobytes()]
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def write_clusters(folder: Path | str, key: dict, clusters: CachedClusters) -> Path:
    """Write ``clusters`` under ``key`` into ``folder`` atomically; returns the entry's path."""
    from safetensors.torch import save_file

    tensors = {name: t.detach().cpu().contiguous() for name, t in clusters.tensors.items()}
    record, alpha, descriptors = json.dumps(key, sort_keys=True), repr(clusters.alpha), str(clusters.descriptors)
    metadata = {"format": FORMAT, "version": VERSION, "key": record, "alpha": alpha, "descriptors": descriptors,
                "sha256": _checksum(record, alpha, descriptors, tensors)}
    return atomic_write(_entry(Path(folder), key), lambda tmp: save_file(tensors, str(tmp), metadata))


def read_clusters(folder: Path | str, key: dict, like: dict[str, torch.Tensor]) -> CachedClusters | None:
    """The entry for ``key`` in ``folder`` when it is there and sound (tensors named and shaped as ``like``), else
    None; a damaged or foreign entry is logged (and overwritten by the next write)."""
    import torch
    from safetensors import SafetensorError, safe_open

    path = _entry(Path(folder), key)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        record, alpha, descriptors = metadata["key"], metadata["alpha"], metadata["descriptors"]
        shapes = {name: tuple(t.shape) for name, t in tensors.items()}
        problem = (f"not a {FORMAT} file" if metadata.get("format") != FORMAT or metadata.get("version") != VERSION
                   else "its checksum does not match: a damaged file"
                   if _checksum(record, alpha, descriptors, tensors) != metadata.get("sha256")
                   else "it was computed from something else" if json.loads(record) != json.loads(json.dumps(key))
                   else f"tensors {shapes}, not the layer's" if shapes != {n: tuple(t.shape) for n, t in like.items()}
                   else "it holds NaN or inf" if not all(bool(torch.isfinite(t).all()) for t in tensors.values())
                   else None)
        if problem is None:
            return CachedClusters(tensors, float(alpha), int(descriptors))
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
        problem = " ".join(f"{type(error).__name__}: {error}".split())[:200]
    logger.warning("cached k-means centroids %s are unusable (%s); clustering again", path, problem)
    return None
