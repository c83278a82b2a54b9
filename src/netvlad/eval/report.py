"""Evaluation artefacts on disk: the JSON summary and the per-query CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from netvlad.data.dataset import GeoDataset
from netvlad.eval.retrieval import EvalResult
from netvlad.files import atomic_write


def write_json(result: EvalResult, path: Path | str, model: str = "", extra: dict | None = None) -> Path:
    """Write ``result.summary(model)`` (plus ``extra`` keys) as JSON at ``path``; returns the path."""
    data = result.summary(model) | (extra or {})
    return atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def write_query_csv(result: EvalResult, dataset: GeoDataset, path: Path | str, top: int = 5) -> Path:
    """One row per query: name, top-``top`` database names and L2 distances, correct@1, correct@top, #positives."""
    top = min(top, result.ranked.shape[1])
    header = (["query"] + [f"top{i + 1}" for i in range(top)] + [f"dist{i + 1}" for i in range(top)]
              + ["correct_at_1", f"correct_at_{top}", "num_positives"])
    db_names = dataset.database.names

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for q, name in enumerate(dataset.queries.names):
                ranked = result.ranked[q, :top]
                writer.writerow([name] + [db_names[i] if i >= 0 else "" for i in ranked]
                                + [f"{d:.6f}" for d in result.distances[q, :top]]
                                + [int(result.correct[q, :1].any()), int(result.correct[q, :top].any()),
                                   len(result.positives[q])])

    return atomic_write(Path(path), write)
