"""The converter registry, importable without torch: each source format's name, help and converter module.

A converter module defines its format with ``@register_converter`` (``netvlad.models.converters.base``); the line
here declares it, so ``netvlad convert --help`` lists the formats without importing torch.
"""

from __future__ import annotations

from netvlad.registry import Registry

CONVERTERS: Registry = Registry("source format", known="known")

for _name, _module, _help in (
    ("matlab", "matlab", "official MATLAB/MatConvNet NetVLAD .mat (vd16 + vlad/vladv2 + WPCA), struct layout"),
    ("patchnetvlad", "patchnetvlad", "QVPR/Patch-NetVLAD *_WPCA<P>.pth.tar (VGG16 + NetVLAD + WPCA 1×1 conv)"),
    ("pytorch-netvlad", "pytorch_netvlad", "Nanne/pytorch-NetVlad checkpoint.pth.tar (VGG16/AlexNet + NetVLAD)"),
):
    CONVERTERS.declare(_name, f"netvlad.models.converters.{_module}", _help)
