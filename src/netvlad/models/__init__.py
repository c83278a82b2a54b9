"""Backbones, weight resolution, the place-recognition model and its checkpoints."""

from netvlad.models.backbones import Backbone, BackboneSpec, get_backbone_spec, list_backbones, register_backbone
from netvlad.models.config import ModelConfig, Preprocessing
from netvlad.models.io import load, read_checkpoint, save_model
from netvlad.models.place_model import POOLS, PlaceModel
from netvlad.models.weights import WeightSource, WeightsUnavailableError, resolve_weights

__all__ = [
    "POOLS", "Backbone", "BackboneSpec", "ModelConfig", "PlaceModel", "Preprocessing", "WeightSource",
    "WeightsUnavailableError", "get_backbone_spec", "list_backbones", "load", "read_checkpoint",
    "register_backbone", "resolve_weights", "save_model",
]
