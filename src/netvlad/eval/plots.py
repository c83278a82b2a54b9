"""Pictures of an evaluation: the Recall@N curve (PNG) and sampled queries with their top-k retrievals."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from netvlad.data.dataset import GeoDataset
from netvlad.eval.retrieval import EvalResult

logger = logging.getLogger(__name__)

GREEN, RED, GREY = (0, 170, 0), (220, 0, 0), (128, 128, 128)


def plot_recall(curves: Mapping[str, Mapping[int, float]], path: Path | str, title: str = "") -> Path:
    """Plot Recall@N (percent) against N for each labelled curve; write a PNG at ``path``."""
    import matplotlib  # heavy, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for label, recall in curves.items():
        ns = sorted(recall)
        ax.plot(ns, [recall[n] for n in ns], marker="o", label=label)
    ax.set(xlabel="N (top retrieved images)", ylabel="Recall@N (%)", ylim=(0, 100), title=title)
    ax.set_xscale("log")
    ax.set_xticks(sorted({n for r in curves.values() for n in r}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def thumbnail(path: Path, height: int, border: tuple[int, int, int], width: int = 6) -> Image.Image:
    """The image at ``path`` scaled to ``height`` pixels high, framed by ``width`` pixels of ``border``."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            image = image.resize((max(1, round(image.width * height / image.height)), height))
    except (OSError, ValueError):
        image = Image.new("RGB", (height, height), GREY)
    return ImageOps.expand(image, border=width, fill=border)


def retrieval_picture(result: EvalResult, dataset: GeoDataset, path: Path | str, num_queries: int = 6,
                      top: int = 5, height: int = 120, seed: int = 0) -> Path:
    """Rows of sampled queries (grey frame) and their top-``top`` retrievals: green correct, red wrong."""
    rng = np.random.default_rng(seed)
    count = min(num_queries, result.num_queries)
    chosen = np.sort(rng.choice(result.num_queries, count, replace=False))
    rows = []
    for q in chosen:
        tiles = [thumbnail(dataset.queries.root / dataset.queries.names[q], height, GREY)]
        for j in range(min(top, result.ranked.shape[1])):
            i = result.ranked[q, j]
            if i < 0:
                continue
            colour = GREEN if result.correct[q, j] else RED
            tiles.append(thumbnail(dataset.database.root / dataset.database.names[i], height, colour))
        rows.append(tiles)
    gap = 8
    width = max((sum(t.width for t in r) + gap * len(r) for r in rows), default=1)
    canvas = Image.new("RGB", (width, max(1, len(rows) * (height + 12 + gap))), (255, 255, 255))
    y = 0
    for q, tiles in zip(chosen, rows, strict=True):
        x = 0
        for tile in tiles:
            canvas.paste(tile, (x, y))
            x += tile.width + gap
        ImageDraw.Draw(canvas).text((4, y + 2), dataset.queries.names[q][:40], fill=(255, 255, 0))
        y += height + 12 + gap
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
