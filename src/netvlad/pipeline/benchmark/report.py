"""What a benchmark run writes: the terminal table, ``benchmark.json``, a Markdown fragment for the docs (with the
command, date and machine line) and a PNG of Recall@1 per method and set."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path

from netvlad.files import atomic_write
from netvlad.pipeline.benchmark.run import BenchmarkResult
from netvlad.pipeline.benchmark.selection import Selection, select_default, select_reranking


def run_meta(command: str, threads: int, seed: int) -> dict:
    """Command, UTC date and the machine: CPU, instruction set, threads, torch and onnxruntime versions, seed."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from netvlad.numerics import cpu_isa, cpu_name

    try:
        onnxruntime = version("onnxruntime")
    except PackageNotFoundError:
        onnxruntime = None
    return {"command": command, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu_name(), "isa": cpu_isa(), "threads": threads, "torch": torch.__version__,
            "onnxruntime": onnxruntime, "python": platform.python_version(), "seed": seed}


def machine_line(meta: dict) -> str:
    """``2026-12-06 11:40 UTC; CPU AMD EPYC (avx2), 1 thread, torch 2.4.1, onnxruntime 1.20.1, seed 0``."""
    threads = f"{meta.get('threads')} thread" + ("" if meta.get("threads") == 1 else "s")
    onnxruntime = f", onnxruntime {meta['onnxruntime']}" if meta.get("onnxruntime") else ""
    return (f"{meta.get('date')}; CPU {meta.get('cpu')} ({meta.get('isa')}), {threads}, torch {meta.get('torch')}"
            f"{onnxruntime}, seed {meta.get('seed')}")


def header(meta: dict) -> str:
    """The first line of a docs fragment: the command that measured it, then :func:`machine_line`."""
    return f"`{meta.get('command', 'netvlad benchmark')}` — {machine_line(meta)}."


def _rows(result: BenchmarkResult) -> list[tuple[str, str]]:
    return [(label, family.name) for family, label, _, _ in result.suite.rows()]


def table(result: BenchmarkResult, markdown: bool = False, times: bool = False, ns: tuple[int, ...] = (1,)) -> str:
    """Methods (rows) × datasets (columns): Recall@N in percent for each N of ``ns`` (``a / b``; ``times``: ms per
    query), notes and errors."""
    sets = [column for column, _, _ in result.suite.columns()]

    def value(label: str, s: str) -> str:
        cell = result.cell(label, s)
        if times and cell.ms_per_query is not None:
            return f"{cell.ms_per_query:.2f}"
        if times and cell.error is None and cell.note is None:
            return "-"
        return cell.text(ns[0]) if cell.recall is None else " / ".join(cell.text(n) for n in ns)

    labels = [label for label, _ in _rows(result)]
    if markdown:
        lines = ["| method | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
        lines += [f"| {label} | " + " | ".join(value(label, s) for s in sets) + " |" for label in labels]
        return "\n".join(lines)
    width = max(len(label) for label in labels)
    columns = [max(len(s), 7) for s in sets]
    lines = [f"{'':<{width}}  " + "  ".join(f"{s:>{w}}" for s, w in zip(sets, columns, strict=True))]
    for label in labels:
        lines.append(f"{label:<{width}}  " + "  ".join(f"{value(label, s):>{w}}"
                                                        for s, w in zip(sets, columns, strict=True)))
    return "\n".join(lines)


def stream_table(result: BenchmarkResult) -> str:
    """The stream columns' PR AUC / recall at 100 % precision (%) of every row that streamed, in Markdown."""
    columns = [column for column, _, stream in result.suite.columns() if stream]
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for label, _ in _rows(result):
        cells = [result.cell(label, c) for c in columns]
        if all(c.stream is None for c in cells):
            continue
        values = [f"{c.stream['pr_auc']:.3f} / {c.stream['recall_at_100_precision']:.1f}" if c.stream else c.text()
                  for c in cells]
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def selection_markdown(selection: Selection) -> str:
    """The leave-one-set-out table and the per-family worst gaps, in Markdown."""

    def points(value) -> str:
        return "n/a" if value is None else ("failed" if value == float("-inf") else f"{value:+.1f}")

    lines = ["| set left out | family chosen on the other sets | its worst gap to the best there | "
             f"its worst margin over `{selection.baseline}` there |", "|---|---|---:|---:|"]
    for s, (chosen, gap, margin) in selection.held_out.items():
        lines.append(f"| {s} | {chosen} | {points(gap)} | {points(margin)} |")
    lines += ["", "| family | " + " | ".join(f"gap on {s}" for s in selection.sets) + " | "
              + " | ".join(f"margin on {s}" for s in selection.sets) + " |",
              "|---|" + "---:|" * (2 * len(selection.sets))]
    for f in selection.families:
        bold = "**" if f == selection.default else ""
        lines.append(f"| {bold}{f}{bold} | " + " | ".join(points(selection.gap[f][s]) for s in selection.sets)
                     + " | " + " | ".join(points(selection.margin[f][s]) for s in selection.sets) + " |")
    return "\n".join(lines)


def _target_sentence(selection: Selection) -> str:
    """Whether the default is within ``tolerance`` of the best family on every set, and if not where it misses;
    with the family whose worst set is best (among those judged on every column the default is), where that is
    another."""

    def worst(family: str) -> tuple[float, str]:
        gaps = [(selection.gap[family][s], s) for s in selection.sets if selection.gap[family][s] is not None]
        return min(gaps, default=(0.0, "-"))

    gap, where = worst(selection.default)
    text = (f"Within {selection.tolerance:g} point of the best family on every set: "
            + ("yes" if gap >= -selection.tolerance else f"no, `{selection.default}` misses by {-gap:.1f} on {where}"))
    judged = [s for s in selection.sets if selection.gap[selection.default][s] is not None]
    rivals = [f for f in selection.families if all(selection.gap[f][s] is not None for s in judged)]  # same columns
    best = max(rivals, key=lambda f: worst(f)[0])
    if best != selection.default:
        best_gap, best_where = worst(best)
        text += (f"; the best worst set of any family is `{best}`'s, "
                 + ("within it everywhere" if best_gap >= -selection.tolerance
                    else f"{-best_gap:.1f} below the best on {best_where}"))
    return text + "."


def markdown(result: BenchmarkResult, selection: Selection | None) -> str:
    """The docs fragment: command, machine line, Recall@1 table, time table and (with a baseline) the choice."""
    meta = result.meta
    parts = [header(meta), "",
             "Recall@1 (%):", "", table(result, markdown=True), "",
             "Time per query (ms; the method alone over stored descriptors; a stream column: per streamed "
             "frame):", "",
             table(result, markdown=True, times=True)]
    if result.suite.stream is not None:
        parts += ["", f"Stream columns (`NAME stream`): each set replayed as `netvlad stream` sees it — the database "
                      "route, then the query route, frame by frame over a growing map, each frame's sequence step "
                      f"over every frame before it but the last {result.suite.stream} — and the sequence top-1 "
                      "within the set's tolerance (`NAME stream` in the Recall@1 table), and the PR AUC of the "
                      "score thresholded across frames (× 100: the column `NAME stream PR AUC` below). PR AUC "
                      "(0–1) / recall at 100 % precision (%):", "", stream_table(result)]
    if selection is not None:
        parts += ["", f"Leave-one-set-out over the families (gap: Recall@1 minus the best family's on the "
                      f"same set, L and mode; margin: minus `{selection.baseline}`'s; worst over L and modes"
                      + ("; a set left out takes its stream columns with it" if result.suite.stream is not None
                         else "") + "):", "",
                  selection_markdown(selection), "",
                  f"Chosen default: **{selection.default}** — the best worst-set gap among the families never more "
                  f"than {selection.tolerance:g} point below `{selection.baseline}` on any set"
                  + (", among those that run frame by frame." if selection.offline else ".")]
        parts += ["", _target_sentence(selection)]
        if selection.offline:
            parts += ["", "Never the default (they need the whole query set, so `netvlad stream` cannot run them): "
                      + ", ".join(selection.offline) + "."]
        if selection.per_method and len(selection.per_method) > 1:
            parts += ["", "Each method's own settings (its family with the best worst-set gap): "
                      + ", ".join(f"{m}: **{f}**" for m, f in selection.per_method.items()) + "."]
        if selection.skipped:
            parts += ["", "Not part of the choice (no baseline result): " + ", ".join(selection.skipped) + "."]
    return "\n".join(parts) + "\n"


def reranking_markdown(result: BenchmarkResult, selection: Selection) -> str:
    """The re-ranking choice as a docs fragment: command and machine line, the leave-one-set-out table, every
    re-ranking row's Recall@1 per set with its worst gap and margin, and the chosen row."""
    suite, sets = result.suite, selection.sets
    rows = {m.name: m for m in suite.methods}

    def worst(values: dict) -> tuple[float, str]:
        return min(((v, s) for s, v in values.items()), default=(float("nan"), "-"))

    lines = [header(result.meta), "",
             f"Leave-one-set-out over the re-ranking rows (gap: Recall@1 minus the best single-frame row's on the "
             f"set, re-ranked or not; margin: minus `{selection.baseline}`'s, no re-ranking):", "",
             "| set left out | row chosen on the other sets | its gap there | its margin there |",
             "|---|---|---:|---:|"]
    lines += [f"| {s} | {chosen} | {gap:+.1f} | {margin:+.1f} |" for s, (chosen, gap, margin)
              in selection.held_out.items()]
    lines += ["", "Recall@1 (%) of every row, its worst gap and its worst margin over the sets:", "",
              "| row | preset | λ | top | " + " | ".join(sets) + " | worst gap | worst margin |",
              "|---|---|---:|---:|" + "---:|" * (len(sets) + 2)]
    for name in (selection.baseline, *selection.families):
        verify = rows[name].verify
        cells = " | ".join(result.cell(name, s).text(1) for s in sets)
        if verify is None:
            lines.append(f"| {name} | none | | | {cells} | | |")
            continue
        gap, where = worst(selection.gap[name])
        margin, below = worst(selection.margin[name])
        weight = rows[name].preset().global_weight
        bold = "**" if name == selection.default else ""
        lines.append(f"| {bold}{name}{bold} | {verify['preset']} | {weight:g} | {verify['top']} | {cells} | "
                     f"{gap:+.1f} ({where}) | {margin:+.1f} ({below}) |")
    chosen = rows[selection.default]
    gap, where = worst(selection.gap[selection.default])
    lines += ["", f"Chosen re-ranking default: **{selection.default}** (preset {chosen.verify['preset']}, "
                  f"λ = {chosen.preset().global_weight:g}, top {chosen.verify['top']}): the best worst set, "
                  f"{-gap:.1f} below the best row on {where}."]
    if selection.per_method and len(selection.per_method) > 1:
        lines += ["", "Each preset's own best row: " + ", ".join(f"{p}: **{f}**"
                                                               for p, f in selection.per_method.items()) + "."]
    if selection.skipped:
        lines += ["", "Not part of the choice (no result without re-ranking): " + ", ".join(selection.skipped) + "."]
    return "\n".join(lines) + "\n"


def recall_markdown(result: BenchmarkResult) -> str:
    """Every row's Recall@1 / Recall@5 (or the suite's first two cut-offs) per set and its time per query, as a
    docs fragment with the command and machine line."""
    ns = tuple(result.suite.recall[:2])
    label = " / ".join(f"R@{n}" for n in ns)
    return "\n".join([header(result.meta), "", f"{label} (%):", "", table(result, markdown=True, ns=ns), "",
                      "Time per query (ms; a re-ranking row: the query's patches, matching its top, the fusion):",
                      "", table(result, markdown=True, times=True)]) + "\n"


FRAGMENTS = {"report": lambda result: markdown(result, select_default(result) if result.suite.baseline else None),
             "recall": recall_markdown,
             "reranking": lambda result: reranking_markdown(result, select_reranking(result))}


def write_fragments(result: BenchmarkResult, folder: Path) -> list[Path]:
    """The suite's docs fragments (``fragments: {NAME: PART}``; PART one of :data:`FRAGMENTS`) as
    ``folder/NAME.md``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, part in result.suite.fragments.items():
        text = FRAGMENTS[part](result)
        paths.append(atomic_write(folder / f"{name}.md", lambda tmp, text=text: tmp.write_text(text, "utf-8")))
    return paths


def plot(result: BenchmarkResult, path: Path) -> Path:
    """Horizontal bars of Recall@1 per method row, one colour per set (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, _ in _rows(result)]
    sets = [column for column, _, _ in result.suite.columns()]
    height = 0.8 / len(sets)
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(labels) * len(sets) ** 0.5 + 1.5), dpi=110)
    for k, s in enumerate(sets):
        values = []
        for label in labels:
            cell = result.cell(label, s)
            values.append(cell.recall[1] if cell.recall is not None else 0.0)
        ax.barh([i + k * height for i in range(len(labels))], values, height=height, label=s)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(labels))], labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="Recall@1 (%)", xlim=(0, 100), title=f"netvlad benchmark: {result.suite.name}")
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def write_reports(result: BenchmarkResult, out: Path) -> dict[str, Path]:
    """``out/benchmark.json``, ``benchmark.md`` and ``benchmark.png``; returns their paths."""
    selection = select_default(result) if result.suite.baseline else None
    data = {"suite": result.suite.name, "source": result.suite.source, "meta": result.meta,
            "recall_at": list(result.suite.recall), "cells": [c.to_dict() for c in result.cells]}
    if selection is not None:
        data["selection"] = {"baseline": selection.baseline, "default": selection.default,
                             "skipped": list(selection.skipped), "per_method": selection.per_method,
                             "offline": list(selection.offline),
                             "held_out": {s: list(v) for s, v in selection.held_out.items()},
                             "groups": selection.groups,
                             "gap": selection.gap, "margin": selection.margin}
    paths = {"json": out / "benchmark.json", "markdown": out / "benchmark.md", "png": out / "benchmark.png"}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(paths["json"], lambda tmp: tmp.write_text(json.dumps(data, indent=1), "utf-8"))
    atomic_write(paths["markdown"], lambda tmp: tmp.write_text(markdown(result, selection), "utf-8"))
    plot(result, paths["png"])
    return paths


