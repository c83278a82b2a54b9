"""Evaluation artefacts on disk: the JSON summary and the per-query CSV, with Recall@N per capture condition."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from netvlad.data.dataset import GeoDataset
from netvlad.eval.pr import PRCurve, top1_pr
from netvlad.eval.recall import EvalResult, recall_by_condition
from netvlad.files import atomic_write


def condition_recall(result: EvalResult, conditions: Sequence[str] | None) -> dict[str, dict] | None:
    """Recall@N of ``result`` per query condition (see :func:`recall_by_condition`), or None without labels."""
    if not conditions:
        return None
    return recall_by_condition(result.ranked, result.positives, conditions, tuple(result.recall))


def condition_table(by_condition: dict[str, dict]) -> str:
    """A markdown table: one row per condition with its query count and Recall@N (percent)."""
    ns = list(next(iter(by_condition.values()))["recall"]) if by_condition else []
    lines = ["| condition | queries | " + " | ".join(f"R@{n}" for n in ns) + " |",
             "|---|---:|" + "---:|" * len(ns)]
    for label, entry in by_condition.items():
        lines.append(f"| {label} | {entry['num_queries']} | "
                     + " | ".join(f"{entry['recall'][n]:.1f}" for n in ns) + " |")
    return "\n".join(lines)


def result_pr(result: EvalResult) -> PRCurve:
    """The precision–recall curve of ``result``'s top-1 matches (score: −L2 distance)."""
    return top1_pr(result.distances, result.correct, result.positives)


def pr_line(result: EvalResult) -> str:
    """One printed line: PR AUC and recall at 100 % and 99 % precision of the single-frame top-1 matches (the
    ranking it belongs to is named, since a sequence table may be printed above it)."""
    pr = result_pr(result).summary()
    return (f"single-frame top-1 (score: L2 distance): PR AUC {pr['pr_auc']:.3f}   "
            f"recall at 100 % precision {pr['recall_at_100_precision']:.2f} %   "
            f"at 99 % {pr['recall_at_99_precision']:.2f} %")


def write_json(result: EvalResult, path: Path | str, model: str = "", extra: dict | None = None,
               conditions: Sequence[str] | None = None) -> Path:
    """Write ``result.summary(model)`` (plus ``extra`` keys, and ``recall_by_condition`` where ``conditions``
    labels the queries) as JSON at ``path``; returns the path."""
    data = result.summary(model)
    by_condition = condition_recall(result, conditions)
    if by_condition:
        data["recall_by_condition"] = {label: {"num_queries": entry["num_queries"],
                                               "recall": {str(n): round(r, 4) for n, r in entry["recall"].items()}}
                                       for label, entry in by_condition.items()}
    data |= result_pr(result).summary() | (extra or {})
    return atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def write_query_csv(result: EvalResult, dataset: GeoDataset, path: Path | str, top: int = 5,
                    conditions: Sequence[str] | None = None) -> Path:
    """One row per query: name, top-``top`` database names and L2 distances, correct@1, correct@top, #positives,
    and its capture condition where ``conditions`` is given."""
    top = min(top, result.ranked.shape[1])
    header = (["query"] + [f"top{i + 1}" for i in range(top)] + [f"dist{i + 1}" for i in range(top)]
              + ["correct_at_1", f"correct_at_{top}", "num_positives"] + (["condition"] if conditions else []))
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
                                   len(result.positives[q])] + ([conditions[q]] if conditions else []))

    return atomic_write(Path(path), write)


def report_paths(output: Path | str) -> dict[str, Path]:
    """results.json -> results.json, results_queries.csv, results_recall.png, results_pr.png,
    results_retrievals.png."""
    stem = Path(output).with_suffix("")
    return {"json": Path(output), "csv": Path(f"{stem}_queries.csv"), "plot": Path(f"{stem}_recall.png"),
            "pr": Path(f"{stem}_pr.png"), "picture": Path(f"{stem}_retrievals.png")}


def write_report(result: EvalResult, dataset: GeoDataset, output: Path | str, label: str = "",
                 extra: dict | None = None, conditions: Sequence[str] | None = None,
                 pictures: int = 6, radius: float | None = None) -> list[Path]:
    """The JSON summary, per-query CSV, Recall@N and precision–recall plots and (``pictures`` > 0 queries) retrieval
    picture beside
    ``output``, as ``netvlad evaluate --output`` writes them (``radius``: metres a correct match is within, for the
    picture's legend); -> the files written."""
    from netvlad.eval.plots import plot_recall, retrieval_picture
    from netvlad.eval.pr_plot import plot_pr

    paths = report_paths(output)
    write_json(result, paths["json"], label, extra, conditions=conditions)
    write_query_csv(result, dataset, paths["csv"], conditions=conditions)
    plot_recall({label: result.recall}, paths["plot"], title=dataset.name)
    plot_pr({label: result_pr(result)}, paths["pr"], title=dataset.name)
    if pictures:
        retrieval_picture(result, dataset, paths["picture"], num_queries=pictures, radius=radius)
    return [p for p in paths.values() if p.exists()]
