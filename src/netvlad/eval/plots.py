"""Pictures of an evaluation: the Recall@N curve (PNG) and sampled queries with their top-k retrievals."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from netvlad.data.dataset import GeoDataset
from netvlad.eval.recall import EvalResult
from netvlad.eval.tiles import GREEN, GREY, RED, Tile, compose, legend, short_name
from netvlad.files import save_figure

logger = logging.getLogger(__name__)



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
    return save_figure(fig, path)


def query_caption(dataset: GeoDataset, q: int, conditions: Sequence[str] | None = None) -> str:
    """``query q00012_night`` / ``query Image050 (night)``: the query's short name and its condition."""
    name = short_name(dataset.queries.names[q])
    condition = conditions[q] if conditions else None
    return f"query {name}" + (f" ({condition})" if condition and condition not in name else "")


def correct_means(dataset: GeoDataset, radius: float | None = None) -> str:
    """What a correct retrieval is on ``dataset``: ``±2 frames`` on a frame sequence, else ``within 25 m``."""
    from netvlad.constants import EVAL_RADIUS_M

    if dataset.frame_tolerance is not None and dataset.is_sequence:
        return f"±{dataset.frame_tolerance} frames"
    return f"within {EVAL_RADIUS_M if radius is None else radius:g} m"


def retrieval_picture(result: EvalResult, dataset: GeoDataset, path: Path | str, num_queries: int = 6,
                      top: int = 5, height: int = 120, seed: int = 0, radius: float | None = None) -> Path:
    """Rows of sampled queries (grey frame, caption: short name and condition) and their top-``top`` retrievals
    (green: correct, red: wrong; caption: rank, short name, descriptor distance), under a legend."""
    from netvlad.data.conditions import query_conditions

    rng = np.random.default_rng(seed)
    count = min(num_queries, result.num_queries)
    chosen = np.sort(rng.choice(result.num_queries, count, replace=False))
    conditions = query_conditions(dataset)
    top = min(top, result.ranked.shape[1])
    rows = []
    for q in chosen:
        row = [Tile(dataset.queries.root / dataset.queries.names[q], GREY, (query_caption(dataset, q, conditions),))]
        for j in range(top):
            i = result.ranked[q, j]
            if i >= 0:
                row.append(Tile(dataset.database.root / dataset.database.names[i],
                                GREEN if result.correct[q, j] else RED,
                                (f"#{j + 1} {short_name(dataset.database.names[i])}",
                                 f"distance {result.distances[q, j]:.3f}")))
        rows.append(row)
    key = legend([(GREY, "query"), (GREEN, f"correct ({correct_means(dataset, radius)})"), (RED, "wrong")],
                 f"top {top} per query, best first; distance: descriptor L2, lower is closer")
    canvas = compose(rows, key, height)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
