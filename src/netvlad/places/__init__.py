"""Places: the growing place database, localisation against a saved place index, and streaming a route through it.

Exports load on first use, so ``import netvlad`` does not import torch.
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.places.database": ("PlaceDatabase",),
    "netvlad.places.localise": ("PlaceIndex", "QueryResult", "build_place_index"),
})
