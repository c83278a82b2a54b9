"""The one dataset abstraction: geo-tagged database and query images, and their ground truth."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netvlad.constants import EVAL_RADIUS_M, NEGATIVE_RADIUS_M, POSITIVE_RADIUS_M
from netvlad.data import geo
from netvlad.data.info import DatasetInfo
from netvlad.data.sequences import SequenceOrder

logger = logging.getLogger(__name__)

# The official code counts a pair closer than 1 m as trivial (the query's own panorama): ``dSq > 1`` in dbBase.m.
TRIVIAL_DISTANCE = 1.0


@dataclass(frozen=True, eq=False)
class ImageList:
    """Images (paths relative to ``root``) with positions in metres (UTM easting, northing; NaN where unknown,
    which readers refuse or skip, so ground truth never sees one).

    ``times`` holds a capture time or capture id per image where known (NaN unknown): equal values mark the same
    capture, excluded from training positives; ``frames`` holds the frame index of frame-synchronised sequences;
    ``sequence`` the sequence order where the data records one (:class:`~netvlad.data.sequences.SequenceOrder`);
    ``panoramas`` the panorama id of each image where several images are cut-outs of one panorama (Tokyo 24/7's
    database: Recall@N counts one hit per panorama); ``stamps`` the header stamp of each image read from a bag.

    Examples:
        >>> street = ImageList("street", ["a.jpg", "b.jpg", "c.jpg"], [[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
        >>> len(street), street.paths()[0], street.subset(np.array([2, 0])).names
        (3, PosixPath('street/a.jpg'), ('c.jpg', 'a.jpg'))
    """

    root: Path
    names: tuple[str, ...]
    utm: np.ndarray  # (N, 2) float64 metres
    zone: tuple[int, str] | None = None  # UTM zone number and letter, where known
    times: np.ndarray | None = None  # (N,) float64
    frames: np.ndarray | None = None  # (N,) int64
    sequence: SequenceOrder | None = None
    panoramas: np.ndarray | None = None  # (N,) int64
    stamps: np.ndarray | None = None  # (N,) int64 nanoseconds: the header stamps of images read from a ROS bag

    def __post_init__(self) -> None:
        utm = np.asarray(self.utm, dtype=np.float64).reshape(-1, 2)
        object.__setattr__(self, "utm", utm)
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "names", tuple(self.names))
        if len(self.names) != len(utm):
            raise ValueError(f"{self.root}: {len(self.names)} names but {len(utm)} positions")
        for attr, dtype in (("times", np.float64), ("frames", np.int64), ("panoramas", np.int64),
                            ("stamps", np.int64)):
            value = getattr(self, attr)
            if value is not None:
                value = np.asarray(value, dtype=dtype).reshape(-1)
                if len(value) != len(utm):
                    raise ValueError(f"{self.root}: {len(value)} {attr} but {len(utm)} images")
                object.__setattr__(self, attr, value)
        if self.sequence is not None and len(self.sequence) != len(utm):
            raise ValueError(f"{self.root}: sequence order of {len(self.sequence)} images but {len(utm)} images")

    def __len__(self) -> int:
        return len(self.names)

    def paths(self) -> list[Path]:
        """Absolute paths of the images."""
        return [self.root / name for name in self.names]

    def subset(self, indices: np.ndarray) -> ImageList:
        """The images at ``indices`` (int array or boolean mask), in that order."""
        idx = np.asarray(indices)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64).reshape(-1)
        return ImageList(self.root, tuple(self.names[i] for i in idx), self.utm[idx], self.zone,
                         None if self.times is None else self.times[idx],
                         None if self.frames is None else self.frames[idx],
                         None if self.sequence is None else self.sequence.subset(idx),
                         None if self.panoramas is None else self.panoramas[idx],
                         None if self.stamps is None else self.stamps[idx])


@dataclass(frozen=True, eq=False)
class GeoDataset:
    """A database and a query :class:`ImageList`; ground truth derives from their positions.

    ``frame_tolerance`` is set for sequences whose evaluation ground truth is a frame index (±k frames); their
    positions are ``(frame × spacing, 0)`` metres, so training (radius-based) runs on them unchanged.
    ``info`` holds what the reader learnt besides (:class:`~netvlad.data.info.DatasetInfo`: format, spacing,
    skipped entries, thresholds...).

    Examples:
        >>> street = ImageList("street", [f"{i}.jpg" for i in range(6)], [[15.0 * i, 0.0] for i in range(6)])
        >>> walk = ImageList("walk", ["a.jpg", "b.jpg"], [[3.0, 0.0], [500.0, 0.0]])
        >>> dataset = GeoDataset("toy", database=street, queries=walk)
        >>> dataset
        < toy - #q: 2; #db: 6 >
        >>> dataset.positives(radius=25.0)  # the evaluation's ground truth
        [array([0, 1]), array([], dtype=int64)]
        >>> dataset.with_positive_queries()
        < toy - #q: 1; #db: 6 >
    """

    name: str
    database: ImageList
    queries: ImageList
    frame_tolerance: int | None = None
    info: DatasetInfo = field(default_factory=DatasetInfo)

    def __repr__(self) -> str:  # one-line summary, as CosPlace prints
        return f"< {self.name} - #q: {len(self.queries)}; #db: {len(self.database)} >"

    @property
    def is_sequence(self) -> bool:
        """True when both sides carry frame indices (frame-synchronised sequence)."""
        return self.database.frames is not None and self.queries.frames is not None

    def positives(self, radius: float = EVAL_RADIUS_M) -> list[np.ndarray]:
        """Evaluation ground truth: per query, sorted database indices within ``radius`` metres (or, for sequences
        with a frame tolerance, within ±frame_tolerance frames)."""
        if self.frame_tolerance is not None and self.is_sequence:
            return geo.frame_neighbours(self.queries.frames, self.database.frames, self.frame_tolerance)
        return geo.radius_neighbours(self.queries.utm, self.database.utm, radius)

    def training_positives(self, radius: float = POSITIVE_RADIUS_M,
                           min_distance: float | None = None) -> list[np.ndarray]:
        """Potential positives for training: per query, sorted database indices within ``radius`` metres that are
        non-trivial: farther than ``min_distance`` metres (default 1 m as the official code; 0 for sequences, where
        the same frame is the true match) and of another capture time / panorama where both are known."""
        if min_distance is None:
            min_distance = 0.0 if self.is_sequence else TRIVIAL_DISTANCE
        return geo.nontrivial_neighbours(self.queries.utm, self.database.utm, radius, min_distance,
                                         self.queries.times, self.database.times)

    def non_negatives(self, radius: float = NEGATIVE_RADIUS_M) -> list[np.ndarray]:
        """Per query, sorted database indices within ``radius`` metres; every other image is a definite negative."""
        return geo.radius_neighbours(self.queries.utm, self.database.utm, radius)

    def queries_without_positives(self, radius: float = EVAL_RADIUS_M) -> np.ndarray:
        """Indices of queries with no evaluation positive within ``radius`` metres (or the frame tolerance)."""
        if self.frame_tolerance is not None and self.is_sequence:
            return np.asarray([i for i, p in enumerate(self.positives(radius)) if len(p) == 0], dtype=np.int64)
        return np.flatnonzero(~geo.has_neighbour(self.queries.utm, self.database.utm, radius)).astype(np.int64)

    def subset(self, query_indices: np.ndarray | None = None, database_indices: np.ndarray | None = None,
               name: str | None = None) -> GeoDataset:
        """A dataset keeping only the given queries / database images (indices re-numbered from 0)."""
        queries = self.queries if query_indices is None else self.queries.subset(query_indices)
        database = self.database if database_indices is None else self.database.subset(database_indices)
        return dataclasses.replace(self, name=name or self.name, queries=queries, database=database)

    def with_positive_queries(self, radius: float = EVAL_RADIUS_M) -> GeoDataset:
        """Drop queries that have no positive within ``radius`` metres (logged with their count)."""
        missing = self.queries_without_positives(radius)
        if len(missing):
            logger.warning("%s: dropping %d of %d queries with no positive within %g m (first: %s)", self.name,
                           len(missing), len(self.queries), radius, self.queries.names[missing[0]])
        keep = np.setdiff1d(np.arange(len(self.queries)), missing)
        return self.subset(query_indices=keep)

    def split_by_frames(self, val_places: int) -> tuple[GeoDataset, GeoDataset]:
        """Split a sequence into (train, val): the last ``val_places`` frames (database and queries) go to val."""
        if not self.is_sequence:
            raise ValueError(f"{self.name}: split_by_frames needs a frame-synchronised sequence; use subset() "
                             "with query/database indices for GPS datasets")
        frames = np.union1d(self.database.frames, self.queries.frames)
        if not 0 < val_places < len(frames):
            raise ValueError(f"{self.name}: val_places must lie in 1..{len(frames) - 1}, got {val_places}")
        cut = frames[len(frames) - val_places]
        train = self.subset(np.flatnonzero(self.queries.frames < cut), np.flatnonzero(self.database.frames < cut),
                            name=f"{self.name}-train")
        val = self.subset(np.flatnonzero(self.queries.frames >= cut), np.flatnonzero(self.database.frames >= cut),
                          name=f"{self.name}-val")
        return train, val
