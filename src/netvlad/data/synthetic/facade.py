"""Procedural façade textures: wall finish, windows, shop fronts with signs, roofs and vegetation.

A texture is painted bottom-up (row 0 at street level) at ``ppm`` texels per metre into three arrays:
albedo (H, W, 3) uint8, material (H, W) uint8 (see :class:`Material`) and aux (H, W) uint8 (a per-window
random value deciding which windows are lit, or per-texel noise for vegetation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netvlad.data.synthetic.materials import Material

WALL_COLOURS = np.array([(150, 70, 55), (185, 95, 70), (215, 190, 140), (230, 220, 200), (160, 160, 155),
                         (240, 240, 235), (150, 175, 195), (160, 180, 150), (215, 165, 160), (120, 95, 80),
                         (85, 85, 90), (200, 120, 70)], dtype=np.float32)
FRAME_COLOURS = np.array([(245, 245, 240), (40, 40, 40), (120, 60, 40), (60, 85, 60), (70, 80, 120)], np.float32)
SIGN_COLOURS = np.array([(200, 30, 30), (30, 60, 180), (20, 140, 60), (240, 200, 20), (240, 120, 20),
                         (120, 40, 150), (20, 150, 160), (20, 20, 20), (245, 245, 245)], dtype=np.float32)
ROOF_COLOURS = np.array([(120, 50, 40), (70, 70, 75), (90, 60, 50), (60, 80, 90)], dtype=np.float32)


@dataclass
class Canvas:
    """A texture being painted; ``ppm`` texels per metre, row 0 at street level."""

    albedo: np.ndarray
    material: np.ndarray
    aux: np.ndarray
    ppm: int

    @classmethod
    def empty(cls, width_px: int, height_px: int, ppm: int) -> Canvas:
        return cls(np.zeros((height_px, width_px, 3), np.float32), np.zeros((height_px, width_px), np.uint8),
                   np.zeros((height_px, width_px), np.uint8), ppm)

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour, material: int, aux: int | None = None) -> None:
        """Fill the rectangle [x0, x1) × [y0, y1) in metres."""
        c0, c1, r0, r1 = (max(0, int(round(v * self.ppm))) for v in (x0, x1, y0, y1))
        self.albedo[r0:r1, c0:c1] = colour
        self.material[r0:r1, c0:c1] = material
        if aux is not None:
            self.aux[r0:r1, c0:c1] = aux


def _wall(canvas: Canvas, rng: np.random.Generator, height: float) -> None:
    """Wall finish up to ``height`` metres: plaster, brick courses, siding or panels."""
    h, w = int(round(height * canvas.ppm)), canvas.albedo.shape[1]
    base = WALL_COLOURS[rng.integers(len(WALL_COLOURS))] * rng.uniform(0.9, 1.1)
    noise = rng.normal(0.0, 5.0, (h, w, 1)).astype(np.float32)
    rows, cols = np.mgrid[0:h, 0:w]
    finish = rng.integers(4)
    if finish == 1:  # brick: light mortar every other row, staggered joints
        mortar = (rows % 2 == 0) | (((cols + 3 * (rows // 2 % 2)) % 6) == 0)
        pattern = np.where(mortar, 1.25, 1.0)
    elif finish == 2:  # siding
        pattern = np.where(rows % 3 == 0, 0.8, 1.0)
    elif finish == 3:  # panels
        step = int(rng.integers(8, 16))
        pattern = np.where((rows % step == 0) | (cols % step == 0), 0.75, 1.0)
    else:
        pattern = np.ones((h, w))
    canvas.albedo[:h] = np.clip(base * pattern[..., None] + noise, 0, 255)
    canvas.material[:h] = Material.WALL


def _window(canvas: Canvas, rng, x: float, y: float, w: float, h: float, frame, style: int) -> None:
    """One window with frame at (x, y) metres (bottom left), glass with a random 'lit' value."""
    glass = np.array((45, 60, 75), np.float32) * rng.uniform(0.8, 1.2)
    canvas.rect(x - 0.1, y - 0.1, x + w + 0.1, y + h + 0.1, frame, Material.WALL)
    canvas.rect(x, y, x + w, y + h, glass, Material.GLASS, int(rng.integers(1, 256)))
    if style == 1:  # cross bars
        canvas.rect(x + w / 2 - 0.05, y, x + w / 2 + 0.05, y + h, frame, Material.WALL)
        canvas.rect(x, y + h * 0.6, x + w, y + h * 0.6 + 0.1, frame, Material.WALL)
    elif style == 2:  # arched top: frame colour in the corners
        r0, r1 = int(round((y + h - w / 2) * canvas.ppm)), int(round((y + h) * canvas.ppm))
        c0, c1 = int(round(x * canvas.ppm)), int(round((x + w) * canvas.ppm))
        rr, cc = np.mgrid[r0:r1, c0:c1]
        centre_r, centre_c, radius = (y + h - w / 2) * canvas.ppm, (x + w / 2) * canvas.ppm, w / 2 * canvas.ppm
        outside = (rr - centre_r) ** 2 + (cc - centre_c) ** 2 > radius**2
        canvas.albedo[rr[outside], cc[outside]] = canvas.albedo[max(r1, 0) - 1, max(c0 - 1, 0)]
        canvas.material[rr[outside], cc[outside]] = Material.WALL


def _upper_floors(canvas: Canvas, rng, width: float, ground: float, floors: int, floor_h: float) -> None:
    """Regular window grid with optional shutters, balconies and window boxes."""
    pitch = rng.uniform(1.8, 3.2)
    n = max(1, int((width - 1.0) // pitch))
    margin = (width - n * pitch) / 2
    win_w, win_h = rng.uniform(0.7, pitch - 0.6), rng.uniform(1.1, min(2.0, floor_h - 0.9))
    frame, style = FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))], int(rng.integers(3))
    shutters = rng.random() < 0.25
    shutter_colour = SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))] * 0.7
    balcony, boxes = rng.random() < 0.25, rng.random() < 0.2
    for f in range(floors):
        y = ground + f * floor_h + 0.9
        for i in range(n):
            x = margin + i * pitch + (pitch - win_w) / 2
            _window(canvas, rng, x, y, win_w, win_h, frame, style)
            if shutters:
                canvas.rect(x - 0.45, y, x - 0.12, y + win_h, shutter_colour, Material.WALL)
                canvas.rect(x + win_w + 0.12, y, x + win_w + 0.45, y + win_h, shutter_colour, Material.WALL)
            if boxes and rng.random() < 0.7:
                _foliage(canvas, rng, x - 0.1, y - 0.35, x + win_w + 0.1, y + 0.05)
        if balcony and f % 2 == 0:
            canvas.rect(margin, y - 0.2, width - margin, y + 0.05, (50, 50, 55), Material.WALL)
            canvas.rect(margin, y + 0.65, width - margin, y + 0.75, (50, 50, 55), Material.WALL)


def _foliage(canvas: Canvas, rng, x0: float, y0: float, x1: float, y1: float) -> None:
    """Vegetation texels with per-texel noise in aux (used to thin them out in winter)."""
    c0, c1, r0, r1 = (max(0, int(round(v * canvas.ppm))) for v in (x0, x1, y0, y1))
    shape = canvas.material[r0:r1, c0:c1].shape
    green = np.array((60, 120, 45), np.float32) * rng.uniform(0.7, 1.2, (*shape, 1)).astype(np.float32)
    canvas.albedo[r0:r1, c0:c1] = green
    canvas.material[r0:r1, c0:c1] = Material.VEGETATION
    canvas.aux[r0:r1, c0:c1] = rng.integers(0, 256, shape, dtype=np.uint8)


def _glyphs(canvas: Canvas, rng, x0: float, y0: float, x1: float, y1: float, colour) -> None:
    """Random 3×5 'letters' across a sign: a place-specific pattern that survives lighting changes."""
    ppm = canvas.ppm
    r0, r1 = int(round(y0 * ppm)) + 1, int(round(y1 * ppm)) - 1
    c, c_end = int(round(x0 * ppm)) + 2, int(round(x1 * ppm)) - 2
    scale = max(1, (r1 - r0) // 5)
    while c + 3 * scale <= c_end:
        bitmap = np.kron(rng.random((5, 3)) < 0.55, np.ones((scale, scale), bool))
        view = canvas.albedo[r0:r0 + bitmap.shape[0], c:c + bitmap.shape[1]]
        view[bitmap[: view.shape[0], : view.shape[1]]] = colour
        c += 4 * scale + (scale if rng.random() < 0.2 else 0)


def _ground_floor(canvas: Canvas, rng, width: float, ground: float) -> None:
    """A shop front (display windows, sign, awning) or a residential door with small windows."""
    frame = FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))]
    door_x = rng.uniform(0.5, max(0.6, width - 1.8))
    if rng.random() < 0.55:  # shop
        sign_y, sign_h = ground - rng.uniform(0.9, 1.3), rng.uniform(0.5, 0.9)
        x0, x1 = (0.3, width - 0.3) if rng.random() < 0.6 else sorted(rng.uniform(0.3, width - 0.3, 2))
        sign = SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))]
        canvas.rect(x0, sign_y, max(x1, x0 + 2.0), sign_y + sign_h, sign, Material.SIGN)
        _glyphs(canvas, rng, x0, sign_y, max(x1, x0 + 2.0), sign_y + sign_h, 255 - sign)
        pane = rng.uniform(1.4, 3.0)
        for x in np.arange(0.4, width - pane, pane + 0.4):
            _window(canvas, rng, x, 0.5, pane, sign_y - 0.8, frame, 0)
        if rng.random() < 0.4:
            colour = SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))]
            for k, x in enumerate(np.arange(0.2, width - 0.2, 0.5)):
                canvas.rect(x, sign_y - 0.6, x + 0.5, sign_y - 0.1, colour if k % 2 else (235, 235, 230), Material.WALL)
    else:
        for x in np.arange(0.6, width - 1.0, rng.uniform(1.8, 2.6)):
            if abs(x - door_x) > 1.5:
                _window(canvas, rng, x, 1.0, 0.8, 1.3, frame, 0)
    door = np.array((90, 55, 35), np.float32) * rng.uniform(0.6, 1.4)
    canvas.rect(door_x - 0.1, 0, door_x + 1.3, 2.4, frame, Material.WALL)
    canvas.rect(door_x, 0, door_x + 1.2, 2.3, door, Material.WALL)


def _roof(canvas: Canvas, rng, width: float, top: float, max_height: float) -> None:
    """A cornice, or a gable / mansard roof above ``top`` metres, clipped to ``max_height``."""
    kind = rng.integers(3)
    roof = ROOF_COLOURS[rng.integers(len(ROOF_COLOURS))]
    if kind == 0:
        canvas.rect(0, top - 0.4, width, top, canvas.albedo[0, 0] * 0.6, Material.WALL)
        return
    rise = min(rng.uniform(1.5, 4.0), max_height - top - 0.1)
    r0, r1 = int(round(top * canvas.ppm)), int(round((top + rise) * canvas.ppm))
    rows, cols = np.mgrid[r0:r1, 0:canvas.albedo.shape[1]]
    half = canvas.albedo.shape[1] / 2
    frac = (rows - r0 + 0.5) / max(r1 - r0, 1)
    inside = np.abs(cols + 0.5 - half) <= half * (1 - frac) if kind == 1 else frac <= 1.0
    shade = np.where(rows % 3 == 0, 0.75, 1.0)[..., None]
    canvas.albedo[rows[inside], cols[inside]] = (roof * shade)[inside]
    canvas.material[rows[inside], cols[inside]] = Material.ROOF


def paint_building(rng: np.random.Generator, width: float, max_height: float, ppm: int) -> Canvas:
    """Texture of one building ``width`` metres wide, at most ``max_height`` metres tall (roof included)."""
    canvas = Canvas.empty(int(round(width * ppm)), int(round(max_height * ppm)), ppm)
    ground, floor_h = rng.uniform(3.6, 4.6), rng.uniform(3.0, 3.4)
    floors = int(min(rng.integers(1, 6), (max_height - 4.5 - ground) // floor_h))
    top = ground + max(floors, 0) * floor_h + rng.uniform(0.4, 1.0)
    _wall(canvas, rng, top)
    _ground_floor(canvas, rng, width, ground)
    if floors > 0:
        _upper_floors(canvas, rng, width, ground, floors, floor_h)
    if rng.random() < 0.15:  # ivy
        x0 = rng.uniform(0, width / 2)
        _foliage(canvas, rng, x0, 0, x0 + rng.uniform(1.5, width / 2), rng.uniform(2.0, top))
    _roof(canvas, rng, width, top, max_height)
    return canvas


def paint_park(rng: np.random.Generator, width: float, max_height: float, ppm: int) -> Canvas:
    """A low hedge and fence with tree crowns behind; the rest is empty, so the sky shows."""
    canvas = Canvas.empty(int(round(width * ppm)), int(round(max_height * ppm)), ppm)
    for x in np.arange(rng.uniform(1, 3), width - 1, rng.uniform(3.5, 6.0)):
        height, radius = rng.uniform(5, min(9, max_height - 3)), rng.uniform(1.5, 2.8)
        canvas.rect(x - 0.2, 0, x + 0.2, height, (70, 50, 35), Material.WALL)
        rr, cc = np.mgrid[0:canvas.albedo.shape[0], 0:canvas.albedo.shape[1]]
        blob = (rr / ppm - height) ** 2 + (cc / ppm - x) ** 2 < radius**2 * rng.uniform(0.8, 1.0, rr.shape)
        canvas.material[blob] = Material.VEGETATION
        canvas.albedo[blob] = np.array((55, 115, 40), np.float32) * rng.uniform(0.6, 1.2, (int(blob.sum()), 1))
        canvas.aux[blob] = rng.integers(0, 256, int(blob.sum()), dtype=np.uint8)
    _foliage(canvas, rng, 0, 0, width, rng.uniform(1.0, 1.6))
    for x in np.arange(0.1, width, 0.6):
        canvas.rect(x, 0, x + 0.08, 1.9, (30, 30, 30), Material.WALL)
    canvas.rect(0, 1.75, width, 1.85, (30, 30, 30), Material.WALL)
    return canvas
