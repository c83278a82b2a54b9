"""The demo's and the city's config dataclasses refuse out-of-range values, naming the field (library-side checks)."""

import pytest

from netvlad.data.synthetic import CityConfig
from netvlad.errors import BadInputError
from netvlad.pipeline import DemoConfig


@pytest.mark.parametrize("field, value", [("batch_size", 0), ("cluster_images", -1), ("workers", -2),
                                          ("radius", 0.0), ("seed", -1), ("localise", -1)])
def test_demo_config_refuses_out_of_range(field, value):
    with pytest.raises(BadInputError, match=f"DemoConfig.{field} must be"):
        DemoConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("jpeg_quality", 0), ("jpeg_quality", 101), ("hfov", 0.0),
                                          ("gps_noise", -0.5), ("texels_per_metre", 0)])
def test_city_config_refuses_out_of_range(field, value):
    with pytest.raises(BadInputError, match=f"CityConfig.{field} must be"):
        CityConfig(**{field: value})


def test_presets_are_valid():
    for name in ("default", "tiny"):
        assert DemoConfig.preset(name).batch_size >= 1
