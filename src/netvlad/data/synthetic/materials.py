"""Material codes stored per texel and per rendered pixel; shading depends on them."""

from __future__ import annotations

from enum import IntEnum


class Material(IntEnum):
    """What a texel is made of (0 is empty: the sky shows through)."""

    EMPTY = 0
    WALL = 1
    GLASS = 2  # windows: lit at night by their per-window random value
    VEGETATION = 3  # recoloured by season
    SIGN = 4  # shop signs: glow at night
    ROOF = 5
    ROAD = 6
    SIDEWALK = 7
    MARKING = 8
    LAMP = 9  # lamps and headlights: glow at night
    BODY = 10  # vehicles and pedestrians
