"""Layers (torch only): NetVLAD, pooling baselines, PCA whitening and their functional forms."""

from netvlad.nn import functional
from netvlad.nn.netvlad import NetVLAD, choose_alpha
from netvlad.nn.pooling import AvgPool, GeM, MaxPool
from netvlad.nn.whitening import PCAWhitening

__all__ = ["AvgPool", "GeM", "MaxPool", "NetVLAD", "PCAWhitening", "choose_alpha", "functional"]
