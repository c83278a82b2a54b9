"""Retrieval pictures that explain themselves: captioned tiles (rank, short name, distance), one row per query
with a readable caption, and a colour legend on top. Used by ``evaluate``, ``retrieve`` and the demo report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from netvlad.data.images import open_image

GREEN, RED, GREY, BLUE = (0, 170, 0), (220, 0, 0), (128, 128, 128), (40, 90, 220)
WHITE, INK = (255, 255, 255), (20, 20, 20)
BORDER, GAP, PAD = 5, 8, 3


@dataclass(frozen=True)
class Tile:
    """One image of a row: its file, frame colour and caption lines (drawn under it)."""

    path: Path
    colour: tuple[int, int, int]
    lines: tuple[str, ...]


@cache
def font(size: int = 13) -> ImageFont.ImageFont:
    """PIL's bundled font at ``size`` pixels (readable at any image size)."""
    return ImageFont.load_default(size=size)


def short_name(name: str) -> str:
    """A readable name: the place/frame field of a DVGB ``@east@north@…@q00012_night@…@.jpg`` name, else the file
    stem (``day_right/Image050.jpg`` -> ``Image050``)."""
    base = name.rsplit("/", 1)[-1]
    fields = [f for f in base.split("@") if f]
    words = [f for f in fields[:-1] if not f.replace(".", "").replace("-", "").isdigit() and len(f) > 1]
    if base.startswith("@") and words:
        return words[-1]
    if base.startswith("@") and len(fields) >= 3:  # only coordinates: UTM east/north, metres
        return f"E{float(fields[0]):.0f} N{float(fields[1]):.0f}"
    return base.rsplit(".", 1)[0]


def _framed(path: Path, height: int, colour: tuple[int, int, int]) -> Image.Image:
    try:
        with open_image(Path(path)) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            image = image.resize((max(1, round(image.width * height / image.height)), height))
    except (OSError, ValueError):
        image = Image.new("RGB", (height, height), GREY)
    return ImageOps.expand(image, border=BORDER, fill=colour)


def captioned(tile: Tile, height: int, size: int = 13) -> Image.Image:
    """The tile's image ``height`` pixels high in its coloured frame, its caption lines below (clipped to its width)."""
    framed = _framed(tile.path, height, tile.colour)
    line_height = size + 3
    canvas = Image.new("RGB", (framed.width, framed.height + PAD + line_height * len(tile.lines)), WHITE)
    canvas.paste(framed, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(tile.lines):
        while len(line) > 3 and draw.textlength(line, font=font(size)) > framed.width:
            line = line[:-2] + "…"
        draw.text((1, framed.height + PAD + i * line_height), line, fill=INK, font=font(size))
    return canvas


def legend(entries: Sequence[tuple[tuple[int, int, int], str]], note: str = "", size: int = 14) -> Image.Image:
    """One line: a colour swatch and its meaning per entry, then ``note``."""
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = sum(size + 8 + int(draw.textlength(text, font=font(size))) + 18 for _, text in entries)
    width += int(draw.textlength(note, font=font(size))) + 4
    canvas = Image.new("RGB", (width, size + 10), WHITE)
    draw, x = ImageDraw.Draw(canvas), 2
    for colour, text in entries:
        draw.rectangle((x, 4, x + size, 4 + size), outline=colour, width=3)
        x += size + 6
        draw.text((x, 3), text, fill=INK, font=font(size))
        x += int(draw.textlength(text, font=font(size))) + 18
    draw.text((x, 3), note, fill=INK, font=font(size))
    return canvas


def compose(rows: Sequence[Sequence[Tile]], key: Image.Image, height: int = 120) -> Image.Image:
    """The legend on top, then one row of captioned tiles per query (the query first)."""
    images = [[captioned(tile, height) for tile in row] for row in rows]
    widths = [sum(i.width for i in row) + GAP * (len(row) - 1) for row in images]
    heights = [max(i.height for i in row) for row in images]
    canvas = Image.new("RGB", (max([key.width, *widths]) + 2 * GAP, key.height + sum(heights) + GAP * (len(rows) + 2)),
                       WHITE)
    canvas.paste(key, (GAP, GAP))
    y = key.height + 2 * GAP
    for row, row_height in zip(images, heights, strict=True):
        x = GAP
        for image in row:
            canvas.paste(image, (x, y))
            x += image.width + GAP
        y += row_height + GAP
    return canvas
