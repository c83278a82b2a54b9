"""What a reader learnt about a dataset besides its images and positions: typed, frozen, ``None`` where unknown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class DatasetInfo:
    """Reader details of a :class:`~netvlad.data.dataset.GeoDataset`; every field is optional.

    Panorama ids are not here: they are per image, in ``ImageList.panoramas``.

    Examples:
        >>> info = DatasetInfo(format="csv", skipped=(("7.jpg", "cannot decode image"),))
        >>> info.format, len(info.skipped), info.spacing
        ('csv', 1, None)
    """

    format: str | None = None  # the reader that read it: "mat", "csv", "dvgb", "msls", "sequence", "exif"
    skipped: tuple[tuple[str, str], ...] = ()  # (entry, reason) of each bad entry skipped with skip_bad=True
    split: str | None = None  # the split the file says it holds (a .mat's whichSet)
    spacing: float | None = None  # metres per frame of a frame-synchronised sequence
    spacing_assumed: bool = False  # True where ``spacing`` is a default, not read from the data or given
    eval_radius: float | None = None  # metres: a .mat's posDistThr
    train_radius: float | None = None  # metres: √nonTrivPosDistSqThr of a .mat
    dataset: str | None = None  # the benchmark it is: "tokyo247", "msls"
    query_set: str | None = None  # Tokyo 24/7's query set: "247query_subset_v2", "247query_v3"
    cutouts_per_panorama: int | None = None  # Tokyo 24/7: database cut-outs per panorama (12)
    query_conditions: Mapping[str, str] | None = None  # {query name: condition ("day", "night"...)}
    cities: tuple[str, ...] | None = None  # MSLS cities, in reading order
    subtask: str | None = None  # MSLS subtask ("all", "s2w", "n2d"...)
    group_by: str | None = None  # what the images are grouped by for evaluation ("city")

    def __post_init__(self) -> None:
        object.__setattr__(self, "skipped", tuple((str(p), str(r)) for p, r in self.skipped))
        if self.query_conditions is not None:
            object.__setattr__(self, "query_conditions", MappingProxyType(dict(self.query_conditions)))
        if self.cities is not None:
            object.__setattr__(self, "cities", tuple(self.cities))

