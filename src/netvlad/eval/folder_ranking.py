"""Retrieval without positions: rank the images of one folder against another's, as hloc and SfM users need.

:func:`retrieve_folders` writes the top-k database images of every query as a CSV and a JSON file, an hloc pairs
file (``query database`` per line, names relative to the folders' common parent, as hloc's
``pairs_from_retrieval``) and a picture of sampled queries with their retrievals. When both folders are the same,
each image's own match is left out (SfM pairs).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netvlad.data.dataset import ImageList
from netvlad.data.readers.common import list_images
from netvlad.eval.recall import describe, evaluate_descriptors
from netvlad.eval.tiles import BLUE, GREY, Tile, compose, legend, short_name
from netvlad.files import atomic_write
from netvlad.models import PlaceModel

logger = logging.getLogger(__name__)


@dataclass
class Ranking:
    """Per query (``query_names``), the top-k ``database_names`` indices ``ranked`` ``(Q, k)`` (−1: none) and their
    descriptor L2 ``distances``; names (``skipped`` ones too) are relative to ``base``; ``used``: the database
    images and queries that were decoded and ranked."""

    base: Path
    database_names: list[str]
    query_names: list[str]
    ranked: np.ndarray
    distances: np.ndarray
    skipped: list[str]
    used: tuple[int, int] = (0, 0)


def _prefix(folder: Path, base: Path) -> str:
    rel = folder.relative_to(base).as_posix()
    return "" if rel == "." else rel + "/"


def rank_folders(model: PlaceModel, database: Path | str, queries: Path | str, k: int = 10, **extract) -> Ranking:
    """Rank every image under ``queries`` against every image under ``database`` (recursive); ``extract`` goes to
    :func:`~netvlad.eval.recall.describe` (batch_size, workers, device, progress, skip_bad)."""
    database, queries = Path(database).resolve(), Path(queries).resolve()
    db_names, q_names = list_images(database), list_images(queries)
    same = database == queries
    base = Path(os.path.commonpath([database, queries]))
    db_list = ImageList(database, db_names, np.zeros((len(db_names), 2)))
    db, db_valid, db_bad = describe(model, db_list, None, desc="database", **extract)
    if same:
        q, q_valid, q_bad = db, db_valid, []
    else:
        q_list = ImageList(queries, q_names, np.zeros((len(q_names), 2)))
        q, q_valid, q_bad = describe(model, q_list, None, desc="queries", **extract)
    wide = min(k + int(same), len(db_names))
    found = evaluate_descriptors(db, q, [np.empty(0, np.int64)] * len(q_names), ns=(1,), db_valid=db_valid,
                                 query_valid=q_valid, k=wide)
    ranked, distances = found.ranked, found.distances
    if same:  # drop each image's own match
        keep = ranked != np.arange(len(q_names))[:, None]
        ranked = np.stack([np.pad(r[m], (0, wide - m.sum()), constant_values=-1) for r, m in zip(ranked, keep,
                                                                                                 strict=True)])
        distances = np.stack([np.pad(d[m], (0, wide - m.sum()), constant_values=np.inf)
                              for d, m in zip(distances, keep, strict=True)])
    k = min(k, ranked.shape[1])
    db_prefix, q_prefix = _prefix(database, base), _prefix(queries, base)
    return Ranking(base, [db_prefix + n for n in db_names], [q_prefix + n for n in q_names], ranked[:, :k],
                   distances[:, :k], [db_prefix + n for n in db_bad] + [q_prefix + n for n in q_bad],
                   (int(np.sum(db_valid)), int(np.sum(q_valid))))


def write_ranking(ranking: Ranking, out_dir: Path | str, model: str = "", pictures: int = 6) -> dict[str, Path]:
    """Write ``retrieval.csv``, ``retrieval.json``, ``pairs-netvlad-top{k}.txt`` and ``retrievals.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k = ranking.ranked.shape[1]
    rows = [(q, r + 1, ranking.database_names[i], float(ranking.distances[qi, r]))
            for qi, q in enumerate(ranking.query_names) for r, i in enumerate(ranking.ranked[qi]) if i >= 0]

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["query", "rank", "database", "distance"])
            writer.writerows((q, r, d, f"{dist:.6f}") for q, r, d, dist in rows)

    data = {"base": str(ranking.base), "k": k, "model": model, "skipped_images": ranking.skipped,
            "queries": [{"query": q, "retrieved": [{"database": ranking.database_names[i], "distance":
                                                    round(float(ranking.distances[qi, r]), 6)}
                                                   for r, i in enumerate(ranking.ranked[qi]) if i >= 0]}
                        for qi, q in enumerate(ranking.query_names)]}
    paths = {"csv": atomic_write(out / "retrieval.csv", write_csv),
             "json": atomic_write(out / "retrieval.json",
                                  lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")),
             "pairs": atomic_write(out / f"pairs-netvlad-top{k}.txt", lambda tmp: tmp.write_text(
                 "".join(f"{q} {d}\n" for q, _, d, _ in rows), encoding="utf-8"))}
    if pictures:
        paths["picture"] = ranking_picture(ranking, out / "retrievals.png", pictures)
    return paths


def ranking_picture(ranking: Ranking, path: Path, count: int = 6, top: int = 5, height: int = 110) -> Path:
    """Rows of ``count`` evenly spaced queries (grey frame) with their top-``top`` retrievals (blue frame; caption:
    rank, short name, descriptor distance), under a legend."""
    chosen = np.unique(np.linspace(0, len(ranking.query_names) - 1, min(count, len(ranking.query_names))).astype(int))
    top = min(top, ranking.ranked.shape[1])
    rows = [[Tile(ranking.base / ranking.query_names[q], GREY, (f"query {short_name(ranking.query_names[q])}",))]
            + [Tile(ranking.base / ranking.database_names[i], BLUE,
                    (f"#{j + 1} {short_name(ranking.database_names[i])}", f"distance {ranking.distances[q, j]:.3f}"))
               for j, i in enumerate(ranking.ranked[q, :top]) if i >= 0] for q in chosen]
    key = legend([(GREY, "query"), (BLUE, "retrieved")],
                 f"top {top} per query, best first (no positions: not judged); distance: descriptor L2")
    canvas = compose(rows, key, height)
    return atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))


def retrieve_folders(model: PlaceModel, database: Path | str, queries: Path | str, out_dir: Path | str, k: int = 10,
                     pictures: int = 6, label: str = "", **extract) -> dict[str, Path]:
    """Rank ``queries`` against ``database`` and write the files of :func:`write_ranking`; returns their paths."""
    ranking = rank_folders(model, database, queries, k, **extract)
    logger.info("ranked %d queries against %d database images (top %d)%s", ranking.used[1], ranking.used[0],
                ranking.ranked.shape[1], f"; skipped {len(ranking.skipped)} undecodable" if ranking.skipped else "")
    return write_ranking(ranking, out_dir, label, pictures)
