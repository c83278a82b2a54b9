"""The growing place database's settings and search kinds (:class:`netvlad.places.database.PlaceDatabase` is the
database); imports neither numpy nor faiss, so ``netvlad stream --help`` lists the kinds at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from netvlad.errors import BadInputError
from netvlad.registry import Registry
from netvlad.search.index import IndexConfig

DATABASE_KINDS: Registry[str] = Registry("place database kind", "choose one of")
DATABASE_KINDS.add("flat", "exact L2 over the descriptors in memory (appending is free)")
DATABASE_KINDS.add("ivfpq", "IVF-PQ: exact until min-train frames, then trained, added to, retrained when grown")


@dataclass(frozen=True)
class DatabaseConfig:
    """``index``: flat (exact) or ivfpq settings; IVF-PQ trains once ``min_train`` entries exist and retrains past
    ``retrain_factor`` × its training size; ``max_distance`` (L2) drops farther matches from searches."""

    index: IndexConfig = field(default_factory=IndexConfig)
    min_train: int = 1000
    retrain_factor: float = 4.0
    max_distance: float | None = None

    def __post_init__(self) -> None:
        if self.index.kind not in DATABASE_KINDS:
            raise BadInputError(f"a place database searches with {' or '.join(DATABASE_KINDS.names())}, "
                                f"not {self.index.kind!r}")
        if self.retrain_factor <= 1:
            raise BadInputError(f"retrain_factor must be > 1, got {self.retrain_factor}")
        if self.min_train < 2**self.index.nbits:
            raise BadInputError(f"min_train must be at least {2**self.index.nbits} for {self.index.nbits}-bit codes")
