"""What a benchmark run writes: the terminal table, ``benchmark.json``, a Markdown fragment for the docs (with the
command, date and machine line) and a PNG of Recall@1 per method and set."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path

from netvlad.files import atomic_write
from netvlad.pipeline.benchmark.run import BenchmarkResult
from netvlad.pipeline.benchmark.selection import Selection, select_default


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


def table(result: BenchmarkResult, markdown: bool = False, times: bool = False) -> str:
    """Methods (rows) × datasets (columns): Recall@1 in percent (``times``: ms per query), notes and errors."""
    sets = [d.name for d in result.suite.datasets]

    def value(label: str, s: str) -> str:
        cell = result.cell(label, s)
        if times and cell.ms_per_query is not None:
            return f"{cell.ms_per_query:.2f}"
        return "-" if times and cell.error is None and cell.note is None else cell.text(1)

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


def selection_markdown(selection: Selection) -> str:
    """The leave-one-set-out table and the per-family worst gaps, in Markdown."""

    def points(value) -> str:
        return "n/a" if value is None else ("failed" if value == float("-inf") else f"{value:+.1f}")

    lines = ["| set left out | family chosen on the other sets | its worst gap to the best there | "
             f"its worst margin over `{selection.baseline}` there |", "|---|---|---:|---:|"]
    for s in selection.sets:
        chosen, gap, margin = selection.held_out[s]
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
    with the family whose worst set is best, where that is another."""

    def worst(family: str) -> tuple[float, str]:
        gaps = [(selection.gap[family][s], s) for s in selection.sets if selection.gap[family][s] is not None]
        return min(gaps, default=(0.0, "-"))

    gap, where = worst(selection.default)
    text = (f"Within {selection.tolerance:g} point of the best family on every set: "
            + ("yes" if gap >= -selection.tolerance else f"no, `{selection.default}` misses by {-gap:.1f} on {where}"))
    best = max(selection.families, key=lambda f: worst(f)[0])
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
             "Time per query (ms; the method alone over stored descriptors):", "",
             table(result, markdown=True, times=True)]
    if selection is not None:
        parts += ["", f"Leave-one-set-out over the families (gap: Recall@1 minus the best family's on the "
                      f"same set, L and mode; margin: minus `{selection.baseline}`'s; worst over L and modes):", "",
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


def plot(result: BenchmarkResult, path: Path) -> Path:
    """Horizontal bars of Recall@1 per method row, one colour per set (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, _ in _rows(result)]
    sets = [d.name for d in result.suite.datasets]
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
                             "gap": selection.gap, "margin": selection.margin}
    paths = {"json": out / "benchmark.json", "markdown": out / "benchmark.md", "png": out / "benchmark.png"}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(paths["json"], lambda tmp: tmp.write_text(json.dumps(data, indent=1), "utf-8"))
    atomic_write(paths["markdown"], lambda tmp: tmp.write_text(markdown(result, selection), "utf-8"))
    plot(result, paths["png"])
    return paths


