"""Capture condition of each query (day, sunset, night, winter, rain...), where the data say one.

Sources, first that applies: ``info.query_conditions`` (``{query name: condition}``, filled by readers from a
manifest column, Tokyo 24/7's query .csv files or MSLS's ``night`` column), else a condition word in the query's
file name (the generated city names queries ``...@q00012_night@.jpg``).
"""

from __future__ import annotations

import re

from netvlad.data.dataset import GeoDataset

UNKNOWN = "unknown"
# Words naming a lighting, season or weather condition when they stand alone in a file name.
CONDITION_WORDS = ("day", "dawn", "dusk", "sunset", "night", "summer", "autumn", "fall", "winter", "spring", "rain",
                   "fog", "snow", "overcast", "sunny", "cloudy")


def condition_from_name(name: str) -> str | None:
    """The last condition word standing alone in ``name``'s file name (``q00012_night`` -> ``night``), or None."""
    tokens = re.split(r"[^a-z]+", name.rsplit("/", 1)[-1].lower())
    found = [t for t in tokens if t in CONDITION_WORDS]
    return found[-1] if found else None


def query_conditions(dataset: GeoDataset) -> list[str] | None:
    """One condition per query (``"unknown"`` where one is missing), or None when the data give none at all."""
    names = dataset.queries.names
    given = dataset.info.query_conditions
    if given:
        return [str(given.get(name, UNKNOWN)) for name in names]
    found = [condition_from_name(name) for name in names]
    if not any(found):
        return None
    return [c or UNKNOWN for c in found]
