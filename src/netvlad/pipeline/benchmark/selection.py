"""Choosing a default by leave-one-set-out: a method family is judged by its worst set, never its best.

The families compared are those of the baseline's kind: the sequence families, or — with a single-frame baseline,
as when rows differ only in the model's α rule — the single-frame ones.

For every sequence family, column and (L, mode) row: its Recall@1 minus the best family's on that row (the
*gap*, ≤ 0) and minus the baseline family's (the *margin*). A column is a set, or with a suite's ``stream`` also a
set's stream columns (its routes replayed through ``netvlad stream`` over a growing map, the causal rows of
families with a stream score): the sequence top-1 (which place a stream frame is matched to) and the PR AUC × 100
of the score thresholded across frames (what a loop-closure threshold is set on), each in points. Leaving each
set out in turn — its offline and stream columns together — the family whose worst gap over the other sets'
columns is best among those qualified there is chosen (the default's rule on the other sets), and its worst gap
and margin on the set left out are reported. A family qualifies when it is never more than ``tolerance`` points
below the baseline on any column and row and can run frame by frame (not ``offline``, and with a result in every
stream column: the default is shared with ``netvlad stream``); the baseline itself always qualifies. The default
is the qualified family whose worst gap over every column is best. Within each method,
the family with the best worst-set gap gives that method's own settings (used when it is asked for by name).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netvlad.pipeline.benchmark.run import BenchmarkResult


@dataclass(frozen=True)
class Selection:
    """``families`` in suite order; ``sets`` the columns judged; ``gap`` / ``margin`` {family: {column: worst over
    rows}}; ``held_out`` per set left out: (family chosen on the others, its worst gap over the set's columns,
    its worst margin there); ``default`` the chosen family; ``skipped`` the columns without a baseline result;
    ``groups`` {column: its set} (each column its own set where absent)."""

    families: tuple[str, ...]
    sets: tuple[str, ...]
    baseline: str
    gap: dict
    margin: dict
    held_out: dict
    default: str
    tolerance: float
    skipped: tuple[str, ...] = ()  # sets left out of the choice: the baseline has no result there
    offline: tuple[str, ...] = ()  # families whose method needs the whole query set: never the default
    per_method: dict | None = None  # {sequence method: its family with the best worst-set gap} (its own defaults)
    groups: dict | None = None  # {column: its set}: a set's offline and stream columns are held out together


PR_AUC = " PR AUC"  # a stream column's second judged column: its PR AUC × 100 (``NAME stream PR AUC``)


def _recall_grid(result: BenchmarkResult, families: list[str], sets: list[str]) -> dict:
    """{(family, set): {(L, mode): R@1 or nan}} over the rows each family ran; a stream cell's PR AUC (× 100)
    under ``set + PR_AUC`` where that column is asked for."""
    grid: dict = {}
    for cell in result.cells:
        if cell.family in families and cell.dataset in sets and cell.note is None:
            value = np.nan if cell.error is not None else cell.recall[1]
            grid.setdefault((cell.family, cell.dataset), {})[(cell.length, cell.mode)] = value
            if cell.dataset + PR_AUC in sets:
                auc = np.nan if cell.stream is None else 100.0 * cell.stream["pr_auc"]
                grid.setdefault((cell.family, cell.dataset + PR_AUC), {})[(cell.length, cell.mode)] = auc
    return grid


def select_default(result: BenchmarkResult, tolerance: float = 1.0) -> Selection:
    """The leave-one-set-out choice among the suite's families of the baseline's kind (see the module docstring)."""
    suite = result.suite
    if suite.baseline is None:
        raise ValueError(f"suite {suite.name} names no baseline family: nothing to compare the default with")
    kind = {m.name: m.method == "single" for m in suite.methods}
    families = [m.name for m in suite.methods if kind[m.name] == kind.get(suite.baseline)]
    groups = {}
    for column, spec, stream in suite.columns():
        groups[column] = spec.name
        if stream:  # judged twice: its sequence top-1 and the PR AUC of its score thresholded across frames
            groups[column + PR_AUC] = spec.name
    names = list(groups)
    grid = _recall_grid(result, families, names)
    # a set where the baseline has no result (its dataset failed, or no row applies) cannot judge anything
    sets = [s for s in names if any(np.isfinite(v) for v in grid.get((suite.baseline, s), {}).values())]
    skipped = tuple(s for s in names if s not in sets)
    gap, margin = {f: {} for f in families}, {f: {} for f in families}
    for s in sets:
        rows = {r for f in families for r in grid.get((f, s), {})}
        for f in families:
            own = grid.get((f, s), {})
            gaps, margins = [], []
            for r in rows:
                if r not in own:
                    continue
                best = np.nanmax([grid.get((g, s), {}).get(r, np.nan) for g in families])
                base = grid.get((suite.baseline, s), {}).get(r, np.nan)
                gaps.append(own[r] - best)
                margins.append(own[r] - base)
            gap[f][s] = _worst(gaps)
            margin[f][s] = _worst(margins)

    def worst_gap(f: str, over: list[str]) -> float:
        return min((gap[f][s] for s in over if gap[f][s] is not None), default=-np.inf)

    offline = tuple(m.name for m in suite.methods if m.name in families and _offline(m.method))

    def choose(over: list[str]) -> str:  # the rule on the columns ``over``: the default, or a held-out choice
        qualified = [f for f in families if f not in offline and all(
            margin[f][s] is not None and margin[f][s] >= -tolerance for s in over) or f == suite.baseline]
        return max(qualified, key=lambda f: (worst_gap(f, over), f == suite.baseline))

    held_out = {}
    for h in dict.fromkeys(groups[s] for s in sets):  # each set once, its columns together
        others, own = [s for s in sets if groups[s] != h], [s for s in sets if groups[s] == h]
        chosen = choose(others)
        held_out[h] = (chosen, _least([gap[chosen][s] for s in own]), _least([margin[chosen][s] for s in own]))
    default = choose(sets)
    per_method = {}
    for family in suite.methods:
        if family.method != "single" and family.name in families:
            best = per_method.get(family.method)
            if best is None or worst_gap(family.name, sets) > worst_gap(best, sets):
                per_method[family.method] = family.name
    return Selection(tuple(families), tuple(sets), suite.baseline, gap, margin, held_out, default, tolerance,
                     skipped, per_method=per_method, offline=offline, groups=groups)


def _least(values: list) -> float | None:
    """The smallest of ``values`` that are not None (None when none is)."""
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _offline(method: str) -> bool:
    """Whether sequence method ``method`` needs the whole query set (``single``: no)."""
    from netvlad.match.sequence import METHODS

    return method != "single" and METHODS.get(method).offline


def _worst(values: list[float]) -> float | None:
    """The smallest value; None when there is none, -inf when one failed (nan)."""
    if not values:
        return None
    array = np.asarray(values, float)
    return -np.inf if np.isnan(array).any() else round(float(array.min()), 4)


def select_reranking(result: BenchmarkResult) -> Selection | None:
    """The leave-one-set-out choice among the suite's re-ranking rows (preset, λ, top K), for when re-ranking is
    asked for: each row's gap is its Recall@1 minus the best single-frame row's (re-ranked or not) on a set, its
    margin minus the baseline's (no re-ranking). The default is the row whose worst gap over every set is best
    (ties: the best mean gap); ``per_method`` gives each preset's own best row. None when the suite has no
    re-ranking row."""
    suite = result.suite
    families = [m.name for m in suite.methods if m.verify is not None]
    if not families or suite.baseline is None:
        return None
    kind = [m.name for m in suite.methods if m.method == "single"]
    names = [d.name for d in suite.datasets]
    grid = {key: rows.get((1, "-"), np.nan) for key, rows in _recall_grid(result, kind, names).items()}
    sets = [s for s in names if np.isfinite(grid.get((suite.baseline, s), np.nan))]
    gap, margin = {f: {} for f in families}, {f: {} for f in families}
    for s in sets:
        best = np.nanmax([grid.get((f, s), np.nan) for f in kind])
        for f in families:
            value = grid.get((f, s), np.nan)
            gap[f][s] = -np.inf if np.isnan(value) else round(float(value - best), 4)
            margin[f][s] = -np.inf if np.isnan(value) else round(float(value - grid[(suite.baseline, s)]), 4)

    def worst(f: str, over: list[str]) -> tuple[float, float]:  # ties: the better mean gap
        values = [gap[f][s] for s in over]
        return (min(values), float(np.mean(values))) if values else (-np.inf, -np.inf)

    held_out = {}
    for h in sets:
        chosen = max(families, key=lambda f: worst(f, [s for s in sets if s != h]))
        held_out[h] = (chosen, gap[chosen][h], margin[chosen][h])
    per_method: dict = {}
    for m in suite.methods:
        if m.verify is not None:
            preset = m.verify["preset"]
            if preset not in per_method or worst(m.name, sets) > worst(per_method[preset], sets):
                per_method[preset] = m.name
    default = max(families, key=lambda f: worst(f, sets))
    return Selection(tuple(families), tuple(sets), suite.baseline, gap, margin, held_out, default, float("inf"),
                     tuple(s for s in names if s not in sets), per_method=per_method)
