"""``netvlad benchmark``: methods × datasets from one suite file, descriptors extracted once into stores, and the
leave-one-set-out choice of a default (see :mod:`netvlad.pipeline.benchmark.selection`).

Exports load on first use, so the CLI lists the shipped suites without numpy or torch.
"""

from netvlad._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.pipeline.benchmark.suite": ("SUITES", "Suite", "load_suite"),
    "netvlad.pipeline.benchmark.run": ("BenchmarkResult", "Cell", "default_cache", "run_benchmark", "run_suite"),
    "netvlad.pipeline.benchmark.selection": ("Selection", "select_default"),
    "netvlad.pipeline.benchmark.report": ("write_reports", "table"),
})
