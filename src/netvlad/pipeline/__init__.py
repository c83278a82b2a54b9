"""End-to-end pipelines built from the library's steps: ``run_demo`` (the README's ``netvlad demo``)."""

from netvlad.pipeline.config import PRESETS, DemoConfig
from netvlad.pipeline.demo import run_demo

__all__ = ["PRESETS", "DemoConfig", "run_demo"]
