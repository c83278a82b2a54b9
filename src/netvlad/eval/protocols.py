"""Named evaluation protocols: the splits, tolerances, roles and input sizes of the published benchmark tables.

Each :class:`Protocol` is a frozen record; :func:`check_dataset` refuses a dataset of another shape (wrong format,
no panoramas, other cities) and :func:`count_differences` names counts that differ from the published ones. Pure:
no model, no files; it imports only ``netvlad.constants``, ``errors`` and ``registry``, so the CLI lists the protocols
without loading torch (running one lives in ``netvlad.eval.protocol_eval``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from netvlad.constants import EVAL_RADIUS_M
from netvlad.errors import BadInputError
from netvlad.registry import Registry

if TYPE_CHECKING:  # the CLI lists protocols without loading the data stack
    from netvlad.data.dataset import GeoDataset


@dataclass(frozen=True)
class Protocol:
    """One benchmark protocol.

    ``formats``: reader formats that hold the dataset; ``split``/``database``/``queries``: reader options (split,
    sub-folders); ``radius`` metres or ``frame_tolerance`` ±frames (counted on the frame numbers in the file names,
    as the published ground truth); ``resize``/``size``: the input-size policy (``"none"``, ``"fixed"`` (H, W),
    ``"longest"`` (S,)) pixels; ``num_queries``/``num_database``: the published counts; ``panoramas``: score one
    cut-out per panorama; ``group_by``: evaluate groups (MSLS cities) separately and pool; ``drop_unmatched``: drop
    queries with no positive, as the official code does.
    """

    name: str
    description: str
    source: str
    formats: tuple[str, ...]
    split: str | None = None
    database: str | None = None
    queries: str | None = None
    radius: float = EVAL_RADIUS_M
    frame_tolerance: int | None = None
    resize: str = "none"
    size: tuple[int, ...] = ()
    num_queries: int | None = None
    num_database: int | None = None
    panoramas: bool = False
    group_by: str | None = None
    drop_unmatched: bool = False
    hint: str = ""  # a word the dataset's name usually holds (pitts30k, tokyo247...)

    def to_json(self) -> dict:
        """The protocol as a JSON-ready dict (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


NETVLAD = "Arandjelović et al., CVPR 2016 (NetVLAD), Sec. 5.1"
PATCH = "Hausler et al., CVPR 2021 (Patch-NetVLAD), Sec. 4.1 and its dataset_imagenames lists"
DVGB = "Berton et al., CVPR 2022 (Deep Visual Geo-localization Benchmark) / VPR-methods-evaluation"
PATCH_SIZE = (480, 640)  # Patch-NetVLAD resizes every image to 640×480 (W×H)

PROTOCOLS: Registry[Protocol] = Registry("protocol", known="choose one of", ordered=True)


def register_protocol(protocol: Protocol) -> Protocol:
    """Register ``protocol`` under its name (its description is the help the CLI lists)."""
    PROTOCOLS.add(protocol.name, protocol, protocol.description)
    return protocol


for _protocol in (
    Protocol("pitts30k", "Pittsburgh 30k test: 25 m, native 640×480", NETVLAD, ("mat", "dvgb"), split="test",
             num_queries=6816, num_database=10000, hint="pitts30k"),
    Protocol("pitts250k", "Pittsburgh 250k test: 25 m, native 640×480", NETVLAD, ("mat", "dvgb"), split="test",
             num_queries=8280, num_database=83952, hint="pitts250k"),
    Protocol("tokyo247", "Tokyo 24/7: the dbStruct's 315 queries, 25 m, one cut-out per panorama, queries "
             "downscaled to 640 px", NETVLAD + " and dbTokyo247.m", ("mat",), resize="longest", size=(640,),
             num_queries=315, num_database=75984, panoramas=True, hint="tokyo247"),
    Protocol("msls-val", "MSLS validation (cph, sf), im2im, subtask all, 25 m, per city then pooled, 640×480",
             "Warburg et al., CVPR 2020 (MSLS) official evaluate.py; " + PATCH, ("msls",), split="val",
             resize="fixed", size=PATCH_SIZE, num_queries=740, num_database=18871, group_by="city",
             drop_unmatched=True, hint="msls"),
    Protocol("nordland", "Nordland, summer database / winter queries, ±10 frames, 640×480", PATCH, ("sequence",),
             database="summer", queries="winter", frame_tolerance=10, resize="fixed", size=PATCH_SIZE,
             num_queries=27592, num_database=27592, hint="nordland"),
    Protocol("nordland-1", "Nordland as Patch-NetVLAD's split with the strict ±1-frame tolerance", PATCH,
             ("sequence",), database="summer", queries="winter", frame_tolerance=1, resize="fixed", size=PATCH_SIZE,
             num_queries=27592, num_database=27592, hint="nordland"),
    Protocol("gardens-point", "Gardens Point Walking, day_left database / day_right queries, ±2 frames, native "
             "960×540", "Zaffar et al., IJCV 2021 (VPR-Bench)", ("sequence",), database="day_left",
             queries="day_right", frame_tolerance=2, num_queries=200, num_database=200, hint="gardens"),
    Protocol("st-lucia", "St Lucia (DVGB layout, test split), 25 m, native 640×480", DVGB, ("dvgb",), split="test",
             num_queries=1464, num_database=1549, hint="lucia"),
    Protocol("sf-xl", "SF-XL test: queries_v1 against the 2.8M-image database, 25 m, native size",
             "Berton et al., CVPR 2022 (CosPlace) / VPR-methods-evaluation", ("dvgb",), split="test",
             queries="queries_v1", num_queries=1000, num_database=2805839, hint="sf"),
):
    register_protocol(_protocol)


def list_protocols() -> list[str]:
    """Protocol names, in the order of the table above."""
    return PROTOCOLS.names()


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; a clear error listing the others."""
    return PROTOCOLS.get(name)


def check_dataset(protocol: Protocol, dataset: GeoDataset) -> None:
    """Raise :class:`BadInputError` naming what differs when ``dataset`` cannot be the protocol's dataset."""
    fmt = dataset.info.format
    where = f"{dataset.name}: protocol {protocol.name}"
    if fmt not in protocol.formats:
        raise BadInputError(f"{where} needs a {' or '.join(protocol.formats)} dataset, this one is {fmt}")
    if protocol.frame_tolerance is not None and not dataset.is_sequence:
        raise BadInputError(f"{where} needs a frame-synchronised sequence (frame tolerance ±"
                            f"{protocol.frame_tolerance}); this dataset has GPS positions")
    if protocol.panoramas and dataset.database.panoramas is None:
        raise BadInputError(f"{where} scores one cut-out per panorama, but this dataset has no panorama ids (a "
                            "Tokyo 24/7 dbStruct lists 12 cut-outs per panorama; is the database count a multiple "
                            "of 12, and is this tokyo247.mat?)")
    if protocol.group_by == "city" and (dataset.info.cities or ()) != ("cph", "sf"):
        raise BadInputError(f"{where} evaluates the cities cph and sf, this dataset holds "
                            f"{', '.join(dataset.info.cities or ()) or 'none'}")
    split = dataset.info.split
    if protocol.split and fmt == "mat" and isinstance(split, str) and split and split != protocol.split:
        raise BadInputError(f"{where} uses the {protocol.split} split, this file holds {split!r}")
    others = [p for p in PROTOCOLS.values() if p.hint and p.hint != protocol.hint and p.hint in dataset.name.lower()
              and protocol.hint not in dataset.name.lower() and len(p.hint) > 2]
    if others:
        raise BadInputError(f"{where}: the name says {others[0].name}, not {protocol.name}; use protocol "
                            f"{others[0].name}")


def count_differences(protocol: Protocol, num_queries: int, num_database: int) -> dict[str, dict[str, int]]:
    """``{"queries": {"found": n, "published": m}, ...}`` for each count that differs from the published one."""
    found = {"queries": (num_queries, protocol.num_queries), "database": (num_database, protocol.num_database)}
    return {side: {"found": n, "published": m} for side, (n, m) in found.items() if m is not None and n != m}
