"""Pictures of a city for documentation: one place under every condition, and a map of the camera positions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from netvlad.data.synthetic.cameras import Views, database_views, query_views
from netvlad.data.synthetic.city import City, build_city
from netvlad.data.synthetic.city_config import CityConfig
from netvlad.data.synthetic.conditions import CONDITIONS
from netvlad.data.synthetic.render import Pose
from netvlad.data.synthetic.view import render_view

SPLIT_COLOURS = ((40, 110, 220), (240, 150, 20), (210, 40, 60))  # train, val, test


def condition_strip(city: City, config: CityConfig, views: Views, indices: list[int],
                    conditions: tuple[str, ...]) -> Image.Image:
    """Rows: the views at ``indices``; columns: each of ``conditions`` (same pose, same place)."""
    rows = []
    for i in indices:
        pose = Pose(views.xy[i, 0], views.xy[i, 1], views.heading[i], views.height[i])
        rows.append(np.concatenate([render_view(city, config, pose, CONDITIONS[c], [config.seed, 99, i, k])
                                    for k, c in enumerate(conditions)], axis=1))
    return Image.fromarray(np.concatenate(rows, axis=0))


def city_map(city: City, db: Views, queries: Views, scale: float = 1.5) -> Image.Image:
    """Top view (north up): façades in their wall colour, database cameras coloured by split, queries in black."""
    xmin, ymin, xmax, ymax = city.extent
    pad = 10.0
    size = (int((xmax - xmin + 2 * pad) * scale), int((ymax - ymin + 2 * pad) * scale))
    image = Image.new("RGB", size, (245, 245, 240))
    draw = ImageDraw.Draw(image)

    def px(x: float, y: float) -> tuple[float, float]:
        return (x - xmin + pad) * scale, size[1] - (y - ymin + pad) * scale

    for wall, u0, width in zip(city.walls, city.wall_u0, city.wall_px, strict=True):
        colour = city.atlas.albedo[8:40, u0:u0 + width].reshape(-1, 3).mean(axis=0)
        draw.line([px(*wall[:2]), px(*wall[2:])], fill=tuple(int(c) for c in colour), width=max(2, int(scale * 2)))
    for (x, y), split in zip(db.xy, db.split, strict=True):
        draw.point(px(x, y), fill=SPLIT_COLOURS[split])
        draw.ellipse([*(np.array(px(x, y)) - 1.2), *(np.array(px(x, y)) + 1.2)], fill=SPLIT_COLOURS[split])
    for x, y in queries.xy:
        draw.point(px(x, y), fill=(0, 0, 0))
    for x, y in city.props:
        draw.point(px(x, y), fill=(40, 140, 40))
    legend = [("train database", SPLIT_COLOURS[0]), ("val", SPLIT_COLOURS[1]), ("test", SPLIT_COLOURS[2]),
              ("queries", (0, 0, 0)), ("trees, lamps", (40, 140, 40))]
    x = 8
    for text, colour in legend:
        draw.rectangle([x, 4, x + 8, 12], fill=colour)
        draw.text((x + 12, 2), text, fill=(20, 20, 20))
        x += 20 + int(draw.textlength(text))
    return image


def save_previews(config: CityConfig, out_dir: str | Path) -> list[Path]:
    """Write ``city_conditions.png``, ``city_map.png`` and ``city_pairs.png`` (queries over their database views)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    city = build_city(config)
    db, queries = database_views(city, config), query_views(city, config)
    conditions = (config.db_condition, *config.query_conditions)
    picks = [int(len(db) * f) // 2 * 2 for f in (0.1, 0.45)]
    paths = [out / "city_conditions.png", out / "city_map.png", out / "city_pairs.png"]
    strip = condition_strip(city, config, db, picks, conditions)
    strip.quantize(96, dither=Image.Dither.NONE).save(paths[0], optimize=True)
    city_map(city, db, queries).quantize(64, dither=Image.Dither.NONE).save(paths[1], optimize=True)
    query_pairs(city, config, db, queries).quantize(128, dither=Image.Dither.NONE).save(paths[2], optimize=True)
    return paths


def query_pairs(city: City, config: CityConfig, db: Views, queries: Views, count: int = 6) -> Image.Image:
    """Top row: one query per condition; bottom row: the nearest database view with a similar heading."""
    top, bottom = [], []
    for condition in config.query_conditions[:count]:
        q = next(i for i in range(len(queries)) if queries.condition[i] == condition and queries.split[i] == 2)
        turn = np.abs((db.heading - queries.heading[q] + 180) % 360 - 180)
        d = np.linalg.norm(db.xy - queries.xy[q], axis=1) + 1000 * (turn > 30)
        for views, i, kind, row in ((queries, q, 1, top), (db, int(d.argmin()), 0, bottom)):
            pose = Pose(views.xy[i, 0], views.xy[i, 1], views.heading[i], views.height[i], views.pitch[i])
            row.append(render_view(city, config, pose, CONDITIONS[views.condition[i]], [config.seed, 10, kind, i]))
    return Image.fromarray(np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0))
