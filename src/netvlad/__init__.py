"""netvlad: NetVLAD visual place recognition (Arandjelović et al., CVPR 2016).

Exports load on first use, so ``import netvlad`` (and ``netvlad --help``) does not import torch.
"""

from netvlad._lazy import lazy_exports

__version__ = "0.1.0"
__getattr__, __dir__, _names = lazy_exports(__name__, {
    "netvlad.models": ("ModelConfig", "PlaceModel", "Preprocessing", "load"),
    "netvlad.models.pretrained": ("load_pretrained",),
    "netvlad.places.database": ("PlaceDatabase",),
})
__all__ = [*_names, "__version__"]
