"""The frozen configuration of a synthetic city, and its named sizes."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from netvlad.data.synthetic.conditions import CONDITIONS
from netvlad.limits import NON_NEGATIVE, POSITIVE, Limit
from netvlad.registry import Registry


@dataclass(frozen=True)
class CityConfig:
    """A seeded procedural city: layout, cameras, image size, and the appearance of each pass.

    Lengths are metres, angles degrees, ``image_size`` is (width, height) pixels. Local city
    coordinates (x east, y north) are offset by ``origin`` = (easting, northing) in UTM ``zone``.
    """

    seed: int = 0
    blocks: tuple[int, int] = (9, 4)  # blocks along x (east) and y (north)
    block_size: tuple[float, float] = (55.0, 85.0)  # min, max pitch between street centrelines
    street_width: float = 14.0  # façade to façade
    spacing: float = 5.0  # database positions along a street
    view_angle: float = 50.0  # database headings: street direction ± this
    query_fraction: float = 1.0  # queries per database position
    query_offset: float = 4.0  # max offset of a query along the street from its anchor
    query_lateral: float = 1.0  # max lateral offset of a query
    heading_noise: float = 8.0  # std of query heading noise (clipped at 2 std)
    gps_noise: float = 0.7  # std of the recorded query position noise (clipped at 2 std); half for the database
    splits: tuple[float, float, float] = (0.55, 0.2, 0.25)  # train, val, test shares of the city's width
    split_gap: float = 36.0  # no camera within split_gap / 2 of a split boundary
    image_size: tuple[int, int] = (160, 120)
    hfov: float = 75.0
    camera_height: float = 2.3
    texels_per_metre: int = 8
    db_condition: str = "day"
    query_conditions: tuple[str, ...] = ("dusk", "night", "winter", "autumn", "rain", "fog")
    zone: tuple[int, str] = (33, "T")
    origin: tuple[float, float] = (399_000.0, 5_299_000.0)
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        for name in (self.db_condition, *self.query_conditions):
            if name not in CONDITIONS:
                raise ValueError(f"unknown condition {name!r}; choose from {sorted(CONDITIONS)}")
        if min(self.blocks) < 2:
            raise ValueError(f"blocks must be at least (2, 2) to have interior streets, got {self.blocks}")
        if not self.block_size[0] <= self.block_size[1] or self.block_size[0] <= self.street_width + 10:
            raise ValueError(f"block_size {self.block_size} must be increasing and exceed street_width + 10 m")
        if len(self.splits) != 3 or min(self.splits) <= 0:
            raise ValueError(f"splits must be three positive shares (train, val, test), got {self.splits}")
        if self.spacing <= 0 or min(self.image_size) < 16:
            raise ValueError("spacing must be > 0 and image_size at least 16 pixels")
        for name in ("street_width", "query_fraction", "hfov", "camera_height", "texels_per_metre"):
            POSITIVE.check(f"CityConfig.{name}", getattr(self, name))
        for name in ("query_offset", "query_lateral", "heading_noise", "gps_noise", "split_gap", "view_angle"):
            NON_NEGATIVE.check(f"CityConfig.{name}", getattr(self, name))
        Limit(1, 100, integer=True).check("CityConfig.jpeg_quality", self.jpeg_quality)
        import utm  # numpy: imported when a city is configured, not when the CLI lists the sizes

        utm.to_latlon(*self.origin, *self.zone)  # raises on an invalid zone or origin

    @property
    def focal(self) -> float:
        """Focal length in pixels."""
        return self.image_size[0] / 2 / math.tan(math.radians(self.hfov) / 2)

    def to_json(self) -> str:
        """The config as sorted JSON (stored in ``city.json``)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def preset(cls, size: str = "default", **overrides) -> CityConfig:
        """A named size (see ``SIZES``) with optional field overrides, e.g. ``seed=3``."""
        if size not in SIZES:
            raise ValueError(f"unknown city size {size!r}; choose from {sorted(SIZES)}")
        return dataclasses.replace(cls(**SIZES[size]), **overrides)


# Named sizes: "tiny" for tests (seconds), "small" for a quick look (768 images), "default" for the CPU demo,
# "large" for scale runs (20,961 images: 13,974 database / 6,987 queries, same train/val/test structure).
SIZES: dict[str, dict] = {
    "tiny": {"blocks": (4, 2), "block_size": (40.0, 50.0), "spacing": 10.0, "image_size": (64, 48),
             "splits": (0.4, 0.3, 0.3), "split_gap": 30.0},
    "small": {"blocks": (6, 3), "block_size": (50.0, 70.0)},
    "default": {},
    "large": {"blocks": (26, 14), "block_size": (50.0, 70.0)},
}

# Routes driven through the city as one frame stream (`netvlad generate --route NAME`): name -> its writer
# ``(CityConfig, out) -> frames folder``, imported when asked for.
CITY_ROUTES: Registry = Registry("generated city route", "choose one of")
CITY_ROUTES.declare("loop", "netvlad.data.synthetic.loop:write_loop_route",
                    "one drive along every interior street by day, then half of them again at dusk and in winter")
