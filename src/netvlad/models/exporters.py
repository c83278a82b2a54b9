"""The model-exporter registry, importable without torch: each format's name, help and export function.

An export function ``(model, path, height=480, width=640) -> Path`` writes the whole model (normalisation
included, any batch and image size). The functions live in :mod:`netvlad.models.export` (torch at import), so they are
declared here by path; ``netvlad export FORMAT`` has one sub-command per name.
"""

from __future__ import annotations

from netvlad.registry import Registry

EXPORTERS: Registry = Registry("model export format", known="known")
EXPORTERS.declare("onnx", "netvlad.models.export:export_onnx", "the whole model as onnx (dynamic batch and image size)")
EXPORTERS.declare("torchscript", "netvlad.models.export:export_torchscript",
                  "the whole model as torchscript (dynamic batch and image size)")
