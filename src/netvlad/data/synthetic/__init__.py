"""A procedural, seeded city with geo-tagged street views under changing conditions, written as a DVGB dataset.

Examples:
    >>> from netvlad.data.synthetic import CityConfig, generate_city
    >>> root = generate_city(CityConfig.preset("small", seed=1), "city")  # doctest: +SKIP
"""

from netvlad.data.synthetic.conditions import CONDITIONS, Condition, register_condition
from netvlad.data.synthetic.config import SIZES, CityConfig
from netvlad.data.synthetic.writer import generate_city

__all__ = ["CONDITIONS", "SIZES", "CityConfig", "Condition", "generate_city", "register_condition"]
