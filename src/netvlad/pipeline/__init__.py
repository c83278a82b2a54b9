"""End-to-end pipelines built from the library's steps: ``run_demo`` (the README's ``netvlad demo``),
``run_evaluation`` (``netvlad evaluate``).

Exports load on first use, so the CLI lists the demo presets without torch.
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.pipeline.demo_config": ("PRESETS", "DemoConfig"),
    "netvlad.pipeline.demo": ("run_demo",),
    "netvlad.pipeline.evaluate": ("EvaluationResult", "EvaluationSettings", "run_evaluation"),
})
