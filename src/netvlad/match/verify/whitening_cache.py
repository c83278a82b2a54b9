"""Cached patch whitenings: the PCA whitening of a NetVLAD model's patch vectors is fitted once per model, preset and
fitting images, then read back by every later re-ranking of the same database (a fit on 5,000 patch vectors of
81,920-D costs a minute or more on a CPU).

An entry is ``patch-whitening-<key>.safetensors`` in the k-means cache folder
(:func:`netvlad.extract.cluster_cache.cluster_cache_folder`, or the folder ``--cluster-cache`` names): the
whitening's tensors, keyed by the model's fingerprint (config and every tensor, the k-means centroids included), the
fit's settings (dims, patch size, stride, samples, seed, regularisation) and the content of the images it was fitted
on, written atomically with a SHA-256 (:mod:`netvlad.extract.tensor_cache`); a damaged or foreign entry is logged and
fitted again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from netvlad.extract.cluster_cache import image_identity
from netvlad.extract.tensor_cache import read_entry, write_entry
from netvlad.models import PlaceModel
from netvlad.nn import PCAWhitening

KIND = ("netvlad-patch-whitening", "1")
PREFIX = "patch-whitening-"
WHAT = "cached patch whitening %s is unusable (%s); fitting it again"


def whitening_key(model: PlaceModel, paths: Sequence[Path | str], fit: dict) -> dict:
    """What a fitted patch whitening depends on: the model (fingerprint), the fit's settings ``fit`` and the content
    of the images at ``paths`` in order (an unreadable image raises OSError: then nothing is cached)."""
    images = hashlib.sha256(json.dumps([image_identity(Path(p)) for p in paths]).encode()).hexdigest()
    return {"model": model.fingerprint(), "fit": fit, "images": images}


def write_whitening(folder: Path | str, key: dict, whitening: PCAWhitening) -> Path:
    """Cache ``whitening`` under ``key`` in ``folder`` (atomically) -> the entry's path."""
    return write_entry(folder, key, KIND, dict(whitening.state_dict()), {"eps": repr(whitening.eps)}, PREFIX)


def read_whitening(folder: Path | str, key: dict, in_dim: int, out_dim: int) -> PCAWhitening | None:
    """The whitening cached under ``key`` in ``folder``, or None (logged when the entry is damaged, foreign, or not
    ``in_dim`` -> 1 to ``out_dim`` dims: fewer when too few patches allowed them)."""
    def check(tensors: dict[str, torch.Tensor]) -> str | None:
        dims = len(tensors.get("eigenvalues", ()))
        want = {"linear.weight": (dims, in_dim), "linear.bias": (dims,), "eigenvalues": (dims,)}
        shapes = {name: tuple(t.shape) for name, t in tensors.items()}
        return None if shapes == want and 1 <= dims <= out_dim else f"tensors {shapes}, not {in_dim} -> ≤ {out_dim}"

    found = read_entry(folder, key, KIND, ("eps",), check, WHAT, PREFIX)
    if found is None:
        return None
    tensors, fields = found
    return PCAWhitening.from_tensors(tensors["linear.weight"], tensors["linear.bias"], tensors["eigenvalues"],
                                     float(fields["eps"]))
