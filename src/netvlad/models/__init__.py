"""Backbones, weight resolution, the place-recognition model and its checkpoints (exports load on first use)."""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.models.backbones": ("Backbone",),
    "netvlad.models.backbone_specs": ("BACKBONES", "BackboneSpec", "get_backbone_spec", "list_backbones",
                                      "register_backbone"),
    "netvlad.models.model_config": ("ModelConfig", "Preprocessing"),
    "netvlad.models.io": ("load", "read_checkpoint", "save_model"),
    "netvlad.models.place_model": ("PlaceModel",),
    "netvlad.models.pools": ("POOLS",),
    "netvlad.models.weights": ("WeightSource", "WeightsUnavailableError", "resolve_weights"),
})
