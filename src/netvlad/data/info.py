"""What a reader learnt about a dataset besides its images and positions: typed, frozen, ``None`` where unknown.

:class:`DatasetInfo` replaces the ``GeoDataset.meta`` dict of earlier versions; :func:`meta_view` builds that dict's
keys from it for code written against ``meta`` (deprecated, removed in the next release).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType

_warned = False  # the deprecated ``meta`` view warns once per process


@dataclass(frozen=True)
class DatasetInfo:
    """Reader details of a :class:`~netvlad.data.dataset.GeoDataset`; every field is optional.

    Panorama ids are not here: they are per image, in ``ImageList.panoramas``.
    """

    format: str | None = None  # the reader that read it: "mat", "csv", "dvgb", "msls", "sequence", "exif"
    skipped: tuple[tuple[str, str], ...] = ()  # (entry, reason) of each bad entry skipped with skip_bad=True
    split: str | None = None  # the split the file says it holds (a .mat's whichSet)
    spacing: float | None = None  # metres per frame of a frame-synchronised sequence
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


def meta_view(info: DatasetInfo, panoramas: bool) -> Mapping:
    """The keys the old ``GeoDataset.meta`` dict had, read-only, from ``info`` (``panoramas``: the database has
    panorama ids); warns (DeprecationWarning) the first time in a process."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn("GeoDataset.meta is deprecated and goes in the next release; read GeoDataset.info (a "
                      "DatasetInfo) and ImageList.panoramas instead", DeprecationWarning, stacklevel=3)
    meta: dict = {}
    for item in fields(info):
        value = getattr(info, item.name)
        if value is not None:
            meta[item.name] = list(value) if item.name in ("skipped", "cities") else value
    if meta.get("query_conditions") is not None:
        meta["query_conditions"] = dict(meta["query_conditions"])
    if panoramas:
        meta["panoramas"] = True
    return MappingProxyType(meta)
