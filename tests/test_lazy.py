"""Package exports load on first use: ``import netvlad`` and the config modules the CLI reads stay torch-free."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import netvlad
import netvlad.models
import netvlad.train
from tests.conftest import REPO


def test_exports_resolve_and_unknown_names_fail():
    from netvlad.models.place_model import PlaceModel

    assert netvlad.PlaceModel is PlaceModel and netvlad.models.PlaceModel is PlaceModel
    assert {"PlaceModel", "load", "load_pretrained", "__version__"} <= set(netvlad.__all__) <= set(dir(netvlad))
    assert "TrainConfig" in dir(netvlad.train)
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        _ = netvlad.models.Nothing


@pytest.mark.parametrize("module", ["netvlad", "netvlad.train.train_config", "netvlad.cli.main", "netvlad.limits"])
def test_import_without_torch(module):
    code = f"import sys, {module}; print(sorted({{'torch', 'faiss', 'numpy'}} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"
