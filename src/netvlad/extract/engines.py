"""Inference engines by name: which runtime turns images into descriptors during extraction.

Torch-free (imports only the registry), so the CLI gives ``--engine`` its choices without importing torch; running
one lives in :mod:`netvlad.extract.engine`.
"""

from __future__ import annotations

from netvlad.registry import Registry

ENGINES: Registry[str] = Registry("inference engine")
ENGINES.add("torch", "the PyTorch model itself (any device)")
ENGINES.add("onnxruntime", "the model exported once to ONNX and run by onnxruntime (CPU; CUDA with onnxruntime-gpu)")
ENGINES.add("auto", "onnxruntime on a CPU for the backbones it is measured faster on (when installed and the model "
                    "exports), torch otherwise")

# backbones whose whole pipeline onnxruntime runs faster than torch on a CPU at 1 thread, batch 1 and 16
# (benchmarks/engine.py, docs/engine.md); auto keeps torch for the others, so it is never slower than torch
AUTO_ONNX_BACKBONES = frozenset({"mobilenet_v2", "resnet50_layer3"})

LIBRARY_ENGINE = "torch"  # the library's functions: no export written unless asked for
# the commands' default (docs/engine.md measures why); NETVLAD_ENGINE in the environment overrides it
COMMAND_ENGINE = "auto"
ENGINE_VARIABLE = "NETVLAD_ENGINE"
ONNX_EXTRA = "pip install 'netvlad[export]'"  # the extra that brings onnxruntime
