"""The one dataset abstraction: geo-tagged database and query images, and their ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netvlad.data import geo


@dataclass(frozen=True, eq=False)
class ImageList:
    """Images (paths relative to ``root``) with positions in metres (UTM easting, northing).

    ``times`` holds a capture time or panorama id per image where known (NaN/-1 unknown), used to
    exclude trivial positives; ``frames`` holds the frame index of frame-synchronised sequences.
    """

    root: Path
    names: tuple[str, ...]
    utm: np.ndarray  # (N, 2) float64 metres
    zone: tuple[int, str] | None = None  # UTM zone number and letter, where known
    times: np.ndarray | None = None  # (N,) float64
    frames: np.ndarray | None = None  # (N,) int64

    def __post_init__(self) -> None:
        utm = np.asarray(self.utm, dtype=np.float64).reshape(-1, 2)
        object.__setattr__(self, "utm", utm)
        object.__setattr__(self, "root", Path(self.root))
        if len(self.names) != len(utm):
            raise ValueError(f"{self.root}: {len(self.names)} names but {len(utm)} positions")

    def __len__(self) -> int:
        return len(self.names)

    def paths(self) -> list[Path]:
        """Absolute paths of the images."""
        return [self.root / name for name in self.names]


@dataclass(frozen=True, eq=False)
class GeoDataset:
    """A database and a query :class:`ImageList`; ground truth derives from their positions.

    ``frame_tolerance`` is set for sequences whose ground truth is a frame index (±k frames).
    """

    name: str
    database: ImageList
    queries: ImageList
    frame_tolerance: int | None = None
    meta: dict = field(default_factory=dict)

    def __repr__(self) -> str:  # one-line summary, as CosPlace prints
        return f"< {self.name} - #q: {len(self.queries)}; #db: {len(self.database)} >"

    def positives(self, radius: float = 25.0) -> list[np.ndarray]:
        """Per query, sorted database indices within ``radius`` metres (or ±frame_tolerance frames)."""
        if self.frame_tolerance is not None and self.database.frames is not None:
            return geo.frame_neighbours(self.queries.frames, self.database.frames, self.frame_tolerance)
        return geo.radius_neighbours(self.queries.utm, self.database.utm, radius)
