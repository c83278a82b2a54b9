"""A range of places of a frame-synchronised sequence: frames ``start`` (included) to ``stop`` (excluded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netvlad.data.dataset import GeoDataset
from netvlad.errors import BadInputError


@dataclass(frozen=True)
class PlaceRange:
    """Places ``start`` ≤ frame < ``stop`` of a sequence (its frame indices, 0 = the first place)."""

    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise ValueError(f"a place range needs 0 ≤ start < stop, got {self.start}:{self.stop}")

    def __str__(self) -> str:
        return f"{self.start}:{self.stop}"

    @classmethod
    def parse(cls, text: str) -> PlaceRange:
        """``"A:B"`` (places A to B−1, as a Python slice) -> PlaceRange; anything else raises ValueError."""
        start, colon, stop = text.strip().partition(":")
        if not colon or not start.strip().isdigit() or not stop.strip().isdigit():
            raise ValueError(f"{text!r} is not a place range; write START:STOP with whole numbers, e.g. 2000:2400 "
                             "for places 2000 to 2399")
        return cls(int(start), int(stop))

    def contains(self, frames: np.ndarray) -> np.ndarray:
        """Per frame index, whether it lies in the range: ``(N,)`` int -> ``(N,)`` bool."""
        frames = np.asarray(frames)
        return (frames >= self.start) & (frames < self.stop)

    def overlap(self, other: PlaceRange) -> int:
        """How many places the two ranges share."""
        return max(0, min(self.stop, other.stop) - max(self.start, other.start))

    def select(self, dataset: GeoDataset) -> GeoDataset:
        """The database images and queries of ``dataset`` (a sequence) whose place lies in the range."""
        if not dataset.is_sequence:
            raise BadInputError(f"{dataset.name}: a place range needs a frame-synchronised sequence (its frame index "
                                "is the place); this dataset places its images by GPS")
        places = int(np.union1d(dataset.database.frames, dataset.queries.frames).max()) + 1
        if self.stop > places:
            raise BadInputError(f"{dataset.name}: places {self} lie beyond its {places} places (0:{places})")
        return dataset.subset(np.flatnonzero(self.contains(dataset.queries.frames)),
                              np.flatnonzero(self.contains(dataset.database.frames)), name=f"{dataset.name}[{self}]")
