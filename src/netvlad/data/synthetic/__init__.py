"""A procedural, seeded city with geo-tagged street views under changing conditions, written as a DVGB dataset.

Examples:
    >>> from netvlad.data.synthetic import CityConfig, generate_city
    >>> root = generate_city(CityConfig.preset("small", seed=1), "city")  # doctest: +SKIP
"""

from netvlad._lazy import lazy_exports

# exports load on first use, so the CLI lists the city sizes without numpy
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "netvlad.data.synthetic.conditions": ("CONDITIONS", "Condition", "register_condition"),
    "netvlad.data.synthetic.city_config": ("SIZES", "CityConfig"),
    "netvlad.data.synthetic.writer": ("generate_city",),
})
