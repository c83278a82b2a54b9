"""Cached k-means centroids of an off-the-shelf NetVLAD: clustered once per backbone, K, input policy, sampled images
and seed, then reused by every command and library call that would cluster the same images again.

An entry (:mod:`netvlad.extract.tensor_cache`) is ``clusters/<key>.safetensors`` in the cache folder
(:func:`netvlad.files.cache_root`): the NetVLAD layer's tensors as the k-means set them, α, how many local
descriptors the k-means ran on, the record of what it was computed from (:func:`cluster_key`) and a SHA-256 over all
of them. It is written atomically; on read, an entry whose record names anything else, or whose checksum, shape or
values are wrong, is logged and computed again, never used.
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

from netvlad.extract.tensor_cache import read_entry, write_entry
from netvlad.files import cache_root
from netvlad.hashing import raw_bytes

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
        digest.update(raw_bytes(tensor))
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


def write_clusters(folder: Path | str, key: dict, clusters: CachedClusters) -> Path:
    """Write ``clusters`` under ``key`` into ``folder`` atomically; returns the entry's path."""
    return write_entry(folder, key, (FORMAT, VERSION), clusters.tensors,
                       {"alpha": repr(clusters.alpha), "descriptors": str(clusters.descriptors)})


def read_clusters(folder: Path | str, key: dict, like: dict[str, torch.Tensor]) -> CachedClusters | None:
    """The entry for ``key`` in ``folder`` when it is there and sound (tensors named and shaped as ``like``), else
    None; a damaged or foreign entry is logged (and overwritten by the next write)."""
    def check(tensors: dict[str, torch.Tensor]) -> str | None:
        shapes = {name: tuple(t.shape) for name, t in tensors.items()}
        return f"tensors {shapes}, not the layer's" if shapes != {n: tuple(t.shape) for n, t in like.items()} else None

    found = read_entry(folder, key, (FORMAT, VERSION), ("alpha", "descriptors"), check,
                       "cached k-means centroids %s are unusable (%s); clustering again")
    if found is None:
        return None
    tensors, fields = found
    return CachedClusters(tensors, float(fields["alpha"]), int(fields["descriptors"]))
