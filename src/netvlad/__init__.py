"""netvlad: NetVLAD visual place recognition (Arandjelović et al., CVPR 2016)."""

from netvlad.models import ModelConfig, PlaceModel, Preprocessing, load
from netvlad.models.pretrained import load_pretrained

__version__ = "0.1.0"
__all__ = ["ModelConfig", "PlaceModel", "Preprocessing", "__version__", "load", "load_pretrained"]
