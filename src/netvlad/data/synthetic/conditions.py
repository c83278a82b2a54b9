"""Capture conditions of a pass: lighting, season, weather and occluders, as a registry of presets."""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Condition:
    """How a pass looks: sky, light on surfaces, lit windows, season, weather and traffic.

    Colours are RGB in [0, 1]; ``sun_azimuth`` is degrees counter-clockwise from east; ``fog_distance``
    is metres (0: no fog); ``occluders`` is the mean number of vehicles and pedestrians per view.
    """

    name: str
    sky_top: RGB
    sky_horizon: RGB
    ambient: float  # light on every surface
    sun: float  # extra light on surfaces facing the sun
    sun_azimuth: float
    tint: RGB = (1.0, 1.0, 1.0)
    lit_windows: float = 0.0  # share of windows lit
    emissive: float = 0.0  # brightness of signs, lamps and headlights
    season: str = "summer"  # summer | autumn | winter
    fog_distance: float = 0.0
    fog_colour: RGB = (0.7, 0.7, 0.72)
    rain: bool = False
    snowfall: bool = False
    occluders: float = 1.5
    noise: float = 0.01  # std of sensor noise


CONDITIONS: dict[str, Condition] = {}


def register_condition(condition: Condition) -> Condition:
    """Add ``condition`` to the registry under its name."""
    CONDITIONS[condition.name] = condition
    return condition


register_condition(Condition("day", (0.35, 0.55, 0.9), (0.75, 0.85, 0.95), 0.75, 0.45, 135.0, occluders=1.5))
register_condition(Condition("dusk", (0.25, 0.2, 0.45), (0.95, 0.55, 0.35), 0.45, 0.25, 200.0, tint=(1.1, 0.8, 0.65),
                             lit_windows=0.35, emissive=0.6, occluders=2.5, noise=0.02))
register_condition(Condition("night", (0.01, 0.01, 0.04), (0.06, 0.06, 0.12), 0.15, 0.0, 0.0, tint=(0.75, 0.85, 1.25),
                             lit_windows=0.45, emissive=1.0, occluders=2.0, noise=0.03))
register_condition(Condition("winter", (0.6, 0.65, 0.72), (0.85, 0.87, 0.9), 0.8, 0.15, 300.0, tint=(0.95, 1.0, 1.08),
                             season="winter", snowfall=True, occluders=2.0, noise=0.02))
register_condition(Condition("autumn", (0.5, 0.52, 0.55), (0.75, 0.74, 0.7), 0.6, 0.1, 250.0, tint=(1.05, 0.97, 0.85),
                             season="autumn", occluders=3.5))
register_condition(Condition("rain", (0.35, 0.37, 0.4), (0.55, 0.57, 0.6), 0.45, 0.0, 0.0, tint=(0.9, 0.95, 1.05),
                             lit_windows=0.15, emissive=0.4, rain=True, occluders=3.0, noise=0.03))
register_condition(Condition("fog", (0.7, 0.7, 0.72), (0.78, 0.78, 0.8), 0.7, 0.0, 0.0, fog_distance=28.0,
                             season="autumn", occluders=2.5, noise=0.02))
