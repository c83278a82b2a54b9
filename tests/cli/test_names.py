"""The CLI's copies of the library's registered names (kept so that parsing never imports torch) match them."""

from __future__ import annotations

import dataclasses

import pytest

from netvlad.cli import names


def _registries() -> dict[str, object]:
    from netvlad.data import list_formats
    from netvlad.data.synthetic import SIZES
    from netvlad.eval.export import MODEL_EXPORTERS
    from netvlad.eval.index import INDEX_KINDS
    from netvlad.eval.localise import POSITION_ESTIMATORS
    from netvlad.models import POOLS, list_backbones
    from netvlad.models.converters import list_converters
    from netvlad.models.pretrained import PUBLISHED
    from netvlad.pipeline import PRESETS
    from netvlad.train import ClusterConfig

    return {"BACKBONES": list_backbones(), "POOLS": POOLS, "DATASET_FORMATS": list_formats(),
            "CONVERTERS": list_converters(), "PUBLISHED": PUBLISHED, "INDEX_KINDS": INDEX_KINDS,
            "MODEL_EXPORTERS": MODEL_EXPORTERS, "POSITION_ESTIMATORS": POSITION_ESTIMATORS, "CITY_SIZES": SIZES,
            "DEMO_PRESETS": PRESETS, "CLUSTER_DEFAULTS": dataclasses.asdict(ClusterConfig())}


@pytest.mark.parametrize("name", sorted(_registries()))
def test_cli_names_match_the_registry(name):
    registry = _registries()[name]
    mirrored = getattr(names, name)
    if isinstance(mirrored, dict):
        assert mirrored == registry
    else:
        assert sorted(mirrored) == sorted(registry), f"update netvlad/cli/names.py {name}"
