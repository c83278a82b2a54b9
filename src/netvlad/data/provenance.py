"""What a model was trained and validated on, as a checkpoint records it, and which evaluated queries it saw.

A training run records the dataset it was given (name, image folders, a fingerprint of each image list, the number
of places), the part it trained on and the part it validated on (image folders, counts, fingerprints and, for a
frame-synchronised sequence, the place range), the seed and a hash of its config. Evaluating the model on data that
shares an image folder with it, :func:`seen_queries` says which queries show a place the model was trained on.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.place_range import PlaceRange

logger = logging.getLogger(__name__)

PROVENANCE_KEY = "provenance"  # the checkpoint metadata key (``extra``) that holds it


def image_list_fingerprint(images: ImageList) -> str:
    """16 hex digits identifying an image list's file names, in order (the folder is recorded beside it)."""
    return hashlib.sha256("\n".join(images.names).encode()).hexdigest()[:16]


def _images(images: ImageList) -> dict[str, Any]:
    return {"root": str(Path(images.root).resolve()), "images": len(images),
            "fingerprint": image_list_fingerprint(images)}


def place_span(dataset: GeoDataset) -> PlaceRange | None:
    """The places a sequence's database and queries cover, first to last (None for a GPS dataset or no images)."""
    if not dataset.is_sequence or not (len(dataset.database) or len(dataset.queries)):
        return None
    frames = np.union1d(dataset.database.frames, dataset.queries.frames)
    return PlaceRange(int(frames.min()), int(frames.max()) + 1)


def describe_part(dataset: GeoDataset) -> dict[str, Any]:
    """A dataset (or a split of one) as provenance records it: its image lists and, for a sequence, its places."""
    places = place_span(dataset)
    return {"name": dataset.name, "database": _images(dataset.database), "queries": _images(dataset.queries),
            "places": None if places is None else str(places)}


@dataclass(frozen=True)
class Provenance:
    """The data a checkpoint was trained on (``source``, the part ``train``, the part ``val`` or None), the
    training seed and the config hash; each part as :func:`describe_part` writes it."""

    source: dict[str, Any]
    train: dict[str, Any]
    val: dict[str, Any] | None
    seed: int
    config_hash: str

    @classmethod
    def of_training(cls, source: GeoDataset, train: GeoDataset, val: GeoDataset | None, seed: int,
                    config_hash: str) -> Provenance:
        """The provenance of a run that trained on ``train`` and validated on ``val``, split from ``source``."""
        return cls(describe_part(source), describe_part(train), None if val is None else describe_part(val), seed,
                   config_hash)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (the checkpoint's ``extra["provenance"]``)."""
        return {"source": self.source, "train": self.train, "val": self.val, "seed": self.seed,
                "config_hash": self.config_hash}

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> Provenance | None:
        """The provenance in a checkpoint's ``extra`` metadata, or None where it records none (or a damaged one)."""
        record = extra.get(PROVENANCE_KEY)
        try:
            return cls(dict(record["source"]), dict(record["train"]), record["val"] and dict(record["val"]),
                       int(record["seed"]), str(record["config_hash"]))
        except (KeyError, TypeError, ValueError):
            if record is not None:
                logger.warning("the checkpoint's provenance record is unreadable; its training data is unknown")
            return None

    @property
    def roots(self) -> set[str]:
        """The image folders the model was trained on (database and queries)."""
        return {self.train[side]["root"] for side in ("database", "queries")}

    @property
    def train_places(self) -> PlaceRange | None:
        """The places trained on (frame-synchronised sequences), else None."""
        return PlaceRange.parse(self.train["places"]) if self.train.get("places") else None

    def describe(self) -> str:
        """``nordland-train (places 0:2000, 2000 database + 2000 query images)``, one line."""
        where = f"places {self.train['places']}, " if self.train.get("places") else ""
        return (f"{self.train['name']} ({where}{self.train['database']['images']} database + "
                f"{self.train['queries']['images']} query images)")


def shares_images(provenance: Provenance, dataset: GeoDataset) -> bool:
    """True when ``dataset`` reads images from a folder the model was trained on."""
    roots = {str(Path(images.root).resolve()) for images in (dataset.database, dataset.queries)}
    return bool(roots & provenance.roots)


def seen_queries(provenance: Provenance, dataset: GeoDataset) -> np.ndarray | None:
    """Per query of ``dataset``, whether the model was trained on its place: ``(Q,)`` bool, or None where the
    dataset shares no image folder with the training data or the record cannot tell.

    Sequences: a query's place is its frame, seen when it lies in the trained place range. GPS datasets: the
    queries are the training source's own list (same folder and fingerprint), and the first ones were trained on.
    """
    if not shares_images(provenance, dataset):
        return None
    places = provenance.train_places
    if dataset.is_sequence and places is not None:
        return places.contains(dataset.queries.frames)
    queries = provenance.source["queries"]
    if (str(Path(dataset.queries.root).resolve()) == queries["root"]
            and image_list_fingerprint(dataset.queries) == queries["fingerprint"]):
        return np.arange(len(dataset.queries)) < provenance.train["queries"]["images"]
    logger.warning("%s shares image folders with the data the model was trained on (%s), but its queries are "
                   "another list: which of them the model saw is unknown", dataset.name, provenance.describe())
    return None
