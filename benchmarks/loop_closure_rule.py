"""The default loop-closure decision on routes with known revisits: rule families compared leave-one-route-out,
the shipped rule's precision and recall per route.

Routes (each one stream at 1 fps, ``--exclude-recent 60``, off-the-shelf MobileNetV2 + GeM):
- ``gardens``: Gardens Point day_left frames 0–199 then day_right (the same places, the other side of the path),
  longest side 320 px, correct within ±2 frames;
- ``city-SEED-CONDITIONS``: the generated city's loop drive (``netvlad generate --size small --route loop``: every
  street by day, half of them again under each of two conditions), three seeds with other conditions (``CITIES``),
  160 × 120 px, correct within 25 m;
- ``nordland``: Nordland validation places 2000–2399, summer then winter, 64 × 32 px, only the same place correct.

Each route runs single-frame and with ``--sequence 10``, once, with every check computed for every frame (a
permissive rule), and with what other rules need (:func:`recording`); the decision of any rule is then read off
those values. Rule families (``FAMILIES``): the simplest baseline (a distinctiveness threshold alone), the
four-constant rule with an absolute inlier count, an inlier count over the map's null level, and over the frame's
own null (the shipped family; also with fewer cells kept a frame). For each family and each held-out route, the
constants giving zero false closures on the *other* routes, single frame and with ``--sequence 10``, with a margin
(also with each constant one grid step looser), and the highest mean recall there (then the loosest), are applied
to the held-out route.

    python -m benchmarks loop-closure-rule [--work DIR] [--threads 1] [--json checks.json] [--results DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from benchmarks.common import SHARED_DATA, add_results_option, work_dir

DATA = SHARED_DATA
EXCLUDE = 60.0
CITIES = ((0, ("dusk", "winter")), (1, ("night", "fog")), (2, ("rain", "autumn")))  # (seed, revisit conditions)
NULL = 8  # random searchable frames per frame whose inliers sample the map's unrelated-pair distribution
CELLS = (64, 128)  # fewer local features kept per frame (the strongest), recorded for the memory bound
POOL = 100  # null inlier counts the map must hold before its null level is trusted
WINDOW = 10  # frames of the window (single frame: LoopClosureConfig.window; with --sequence 10: L)
Z = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5)
CONSISTENCY = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
OWN = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
SHIPPED = "z, consistency, inliers over the frame's null, the window's support"
FAMILIES = {
    # name: {constant: grid from loose to strict}; each family's rule reads only these constants
    "z alone": {"z": (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0)},
    "z, ratio, inliers, consistency": {
        "z": (1.0, 1.5, 2.0, 2.5, 3.0, 3.5), "ratio": (1.0, 0.975, 0.95, 0.925, 0.9, 0.875, 0.85, 0.8),
        "inliers": (8, 12, 16, 20, 24, 32, 40), "consistency": CONSISTENCY},
    "z, consistency, inliers over the map's null": {
        "z": Z, "consistency": CONSISTENCY, "null": (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)},
    **{f"z, consistency, inliers over the frame's null{label}": {"z": Z, "consistency": CONSISTENCY, key: OWN}
       for key, label in (("own", " (4 random frames + runner-up)"), ("own8", " (8 random frames + runner-up)"),
                          ("own@64", " (64 cells)"))},
    SHIPPED: {"z": Z, "consistency": CONSISTENCY, "own": OWN, "support": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)},
}
MIN_INLIERS = 12  # below this many inliers no homography is trusted, whatever the null says


def routes(work: Path) -> dict[str, tuple[Path, str, tuple[int, ...], float]]:
    """name -> (frames folder, resize, size, radius), written under ``work`` on first use."""
    from netvlad.data.route import RouteConfig, write_route

    gardens = work / "gardens"
    if not (gardens / "frames" / "frames.csv").is_file():
        write_route(DATA / "gardens_point" / "day_left", DATA / "gardens_point" / "day_right", gardens)
    nordland = work / "nordland"
    if not (nordland / "frames" / "frames.csv").is_file():
        for season in ("summer", "winter"):  # the validation places: a folder of links to them
            folder = work / "nordland-places" / season
            folder.mkdir(parents=True, exist_ok=True)
            for place in range(2000, 2400):
                name = f"images-{(place + 1) * 10:05d}.png"
                if not (folder / name).exists():
                    (folder / name).symlink_to(DATA / "nordland" / season / name)
        write_route(work / "nordland-places" / "summer", work / "nordland-places" / "winter", nordland,
                    RouteConfig())
    out = {"gardens": (gardens / "frames", "longest", (320,), 2.0),
           "nordland": (nordland / "frames", "none", (), 0.5)}
    from netvlad.data.synthetic import CityConfig
    from netvlad.data.synthetic.loop import LoopConfig, write_loop_route

    for seed, conditions in CITIES:
        name = f"city-{seed}-{'+'.join(conditions)}"
        if not (work / name / "frames" / "frames.csv").is_file():
            write_loop_route(CityConfig.preset("small", seed=seed), work / name, LoopConfig(conditions=conditions))
        out[name] = (work / name / "frames", "none", (), 25.0)
    return out


def permissive():
    """A rule that accepts everything, so that every check is computed for every frame."""
    from netvlad.places.loop_closure import LoopClosureConfig

    return LoopClosureConfig(min_distinctiveness=float("-inf"), max_ratio=float("inf"), min_inliers=0,
                             min_consistency=0.0, min_geometric=0.0, min_support=0.0)


def recording(config, length: int | None):
    """A loop-closure detector that also records, per frame, what candidate rules need beyond its own checks:
    the two frames' cell counts and mutual matches, the runner-up place's inliers, the inliers against ``NULL``
    random searchable frames (the detector's own draw, extended), and with only the strongest ``CELLS`` cells of
    each frame the candidate's inliers and the frame's null (runner-up and the first ``null_samples`` draws)."""
    import numpy as np
    import torch

    from netvlad.match.verify.matching import mutual_nearest
    from netvlad.places.loop_closure import LoopClosureDetector

    class Recording(LoopClosureDetector):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            self.extras: list[dict] = []

        def check(self, descriptor, local, candidate, shortlist, database, searchable, frame):
            checks = super().check(descriptor, local, candidate, shortlist, database, searchable, frame)
            extra = {}
            if checks.place is not None and local is not None and self.local[checks.place] is not None:
                other = self.local[checks.place]
                _, mutual = mutual_nearest(torch.from_numpy(local.vectors()), torch.from_numpy(other.vectors())[None])
                extra = {"cells": [len(local), len(other)], "mutual": int(mutual.sum())}
                rows = [int(r) for r in np.random.default_rng(frame).integers(0, searchable, size=NULL)]
                if checks.runner_up is not None and self.local[checks.runner_up] is not None:
                    extra["runner_up_inliers"] = self.inliers(local, self.local[checks.runner_up], frame)
                extra["null_inliers"] = [self.inliers(local, self.local[r], frame) for r in rows]
                others = rows[:self.config.null_samples] + ([] if checks.runner_up is None else [checks.runner_up])
                for n in CELLS:
                    mine = local.strongest(n)
                    extra[f"inliers@{n}"] = self.inliers(mine, other.strongest(n), frame)
                    extra[f"null@{n}"] = max(self.inliers(mine, self.local[r].strongest(n), frame) for r in others)
            self.extras.append(extra)
            return checks

    return Recording(config, length)


def record(frames: Path, resize: str, size: tuple[int, ...], radius: float, sequence: int | None) -> list[dict]:
    """Per frame: its checks, whether its match is correct, whether it has an earlier place, the checks' time,
    and the extras of :func:`recording`."""
    from netvlad.data.frames import FrameSource
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing
    from netvlad.places.stream import StreamConfig, StreamMatcher

    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="gem",
                                   preprocessing=Preprocessing(resize=resize, size=size)), pretrained=True)
    config = StreamConfig(exclude_recent=EXCLUDE, radius=radius, sequence=sequence, decision=permissive())
    matcher = StreamMatcher(model, config)
    matcher.detector = recording(config.decision, sequence)
    matcher.detector.local = matcher.database.local  # the frames' local features, as the stream keeps them
    out = []
    for result, extra in zip(matcher.run(FrameSource(frames)), matcher.detector.extras, strict=False):
        c = result.checks
        out.append({"frame": result.frame, "match": result.match, "correct": bool(result.correct),
                    "positive": bool(result.has_positive),
                    "consistency": c.consistency, "distinctiveness": c.distinctiveness, "ratio": c.ratio,
                    "inliers": c.inliers, "null": c.null_inliers, "check_ms": c.check_ms, "place": c.place} | extra)
    return out


def columns(rows: list[dict]) -> dict:
    """A route's recorded checks as arrays (frames whose candidate was not verified: accepted by no rule): the
    frame's null (``own``, as the detector computes it; ``own@n`` with ``n`` cells) and the map's null level, the
    99th percentile of the random null inliers of the frames before (nan until ``POOL``)."""
    import numpy as np

    nan = float("nan")
    out = {key: np.array([nan if r[key] is None else r[key] for r in rows], dtype=np.float64)
           for key in ("consistency", "distinctiveness", "ratio", "inliers")}
    out["correct"] = np.array([r["correct"] for r in rows])
    out["positive"] = int(sum(r["positive"] for r in rows))
    for n in CELLS:  # with fewer cells per frame: the candidate's inliers and the frame's null
        out[f"inliers@{n}"] = np.array([r.get(f"inliers@{n}", nan) for r in rows], dtype=np.float64)
        out[f"own@{n}"] = np.array([r.get(f"null@{n}", nan) for r in rows], dtype=np.float64)
    out["own"] = np.array([nan if r["null"] is None else r["null"] for r in rows], dtype=np.float64)
    out["own8"] = np.array([max([r.get("runner_up_inliers", 0), *r["null_inliers"]]) if "null_inliers" in r
                            else nan for r in rows], dtype=np.float64)
    out["path"] = on_path(np.array([-1 if r.get("place") is None else r["place"] for r in rows]))
    level, pool = [], []
    for r in rows:
        level.append(float(np.percentile(pool, 99)) if len(pool) >= POOL else nan)
        pool.extend(r.get("null_inliers") or [])
    out["level"] = np.array(level)
    return out


def on_path(places):
    """``(n, WINDOW)``: whether frame t − d's place lies on a straight path through frame t's place (d × 0.8 …
    1.25 entries away, either direction, within the tolerance), as the detector's support reads it."""
    import numpy as np

    from netvlad.match.trajectory_distance import VELOCITIES
    from netvlad.places.loop_closure import LoopClosureConfig

    tolerance, n = LoopClosureConfig().tolerance, len(places)
    out = np.zeros((n, WINDOW), dtype=bool)
    for d in range(WINDOW):
        earlier = np.full(n, -1)
        earlier[d:] = places[:n - d]
        apart = np.abs(places - earlier)
        out[:, d] = (places >= 0) & (earlier >= 0) & (apart >= min(VELOCITIES) * d - tolerance) & (
            apart <= max(VELOCITIES) * d + tolerance)
    return out


def accepts(c: dict, family: str, v: dict):
    """Per frame: whether the rule ``v`` (constants) of ``family`` accepts its candidate, over :func:`columns`."""
    import numpy as np

    if "support" in v:  # frames passing on their own, then the window's share of them on the path
        alone = accepts(c, family, {k: x for k, x in v.items() if k != "support"})
        hits = np.zeros(len(alone))
        for d in range(WINDOW):
            hits[d:] += alone[:len(alone) - d] & c["path"][d:, d]
        return alone & (hits / WINDOW >= v["support"])
    with np.errstate(invalid="ignore"):
        ok = c["inliers"] >= MIN_INLIERS
        if "z" in v:
            ok &= c["distinctiveness"] >= v["z"]
        if "ratio" in v:
            ok &= c["ratio"] <= v["ratio"]
        if "consistency" in v:
            ok &= c["consistency"] >= v["consistency"]
        if "inliers" in v:
            ok &= c["inliers"] >= v["inliers"]
        if "null" in v:
            ok &= c["inliers"] >= v["null"] * c["level"]
        for key in [k for k in v if k.startswith("own")]:  # "own", "own8", "own@64": the frame's null
            inliers = c["inliers" + key[3:]] if "@" in key else c["inliers"]
            ok &= (inliers >= MIN_INLIERS) & (inliers >= v[key] * c[key]) & (inliers > c[key])
    return ok


def decide(c: dict, family: str, v: dict) -> tuple[int, int, int]:
    """(true, false, positives) closures of rule ``v`` of ``family`` over a route's :func:`columns`."""
    ok = accepts(c, family, v)
    return int((ok & c["correct"]).sum()), int((ok & ~c["correct"]).sum()), c["positive"]


def grid(family: str):
    """Every rule of ``family``'s grid as (indices, constants)."""
    keys = list(FAMILIES[family])
    for index in itertools.product(*(range(len(v)) for v in FAMILIES[family].values())):
        yield index, {key: FAMILIES[family][key][i] for key, i in zip(keys, index, strict=True)}


def looser(index: tuple[int, ...]) -> list[tuple[int, ...]] | None:
    """The grid neighbours one step looser in each constant (None at a loose edge: no margin can be shown)."""
    if min(index) == 0:
        return None
    return [index[:k] + (i - 1,) + index[k + 1:] for k, i in enumerate(index)]


def pick(routes_: dict[str, dict], family: str, margin: bool = True) -> dict | None:
    """The rule of ``family`` with zero false closures on every route of ``routes_`` (label -> columns) — and a
    margin: also with each constant one grid step looser — and the highest mean recall over them, then the loosest."""
    table = {index: (v, [decide(c, family, v) for c in routes_.values()]) for index, v in grid(family)}

    def safe(index):
        return not any(false for _, false, _ in table[index][1])

    best, best_key = None, None
    for index, (v, results) in table.items():
        neighbours = looser(index)
        if not safe(index) or margin and (neighbours is None or not all(safe(n) for n in neighbours)):
            continue
        # ties (routes where hardly anything closes) go to the loosest rule: the one nearest the safety edge
        key = (sum(t / max(p, 1) for t, _, p in results) / len(results), -sum(index))
        if best_key is None or key > best_key:
            best, best_key = v, key
    return best


def leave_one_out(routes_: dict[str, dict], family: str, margin: bool = True) -> dict[str, tuple]:
    """For each held-out route: (the rule of ``family`` picked on the others, {label: (true, false, positives)})."""
    out = {}
    for held in sorted({label.split("/")[0] for label in routes_}):
        rule = pick({k: c for k, c in routes_.items() if not k.startswith(held + "/")}, family, margin)
        out[held] = (rule, {k: decide(c, family, rule) for k, c in routes_.items()
                            if k.startswith(held + "/")} if rule else {})
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--work", type=Path, default=work_dir("loop-closure-rule"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the checks here (resumed from)")
    parser.add_argument("--load", type=Path, default=None, help="read recorded checks (--json) instead of running")
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Record the routes (or load them), then return the Markdown table."""
    import torch

    torch.set_num_threads(args.threads)
    records = json.loads(args.load.read_text(encoding="utf-8")) if args.load else {}
    if args.json and args.json.is_file():  # resume: routes already recorded there are kept
        records |= json.loads(args.json.read_text(encoding="utf-8"))
    for name, (frames, resize, size, radius) in ({} if args.load else routes(args.work)).items():
        for sequence in (None, 10):
            label = f"{name}/{'single' if sequence is None else 'L=10'}"
            if label in records:
                continue
            records[label] = record(frames, resize, size, radius, sequence)
            print(f"recorded {label}: {len(records[label])} frames", file=sys.stderr)
            if args.json:
                args.json.write_text(json.dumps(records) + "\n", encoding="utf-8")
    return "\n".join(fragment(records))


def fragment(records: dict[str, list[dict]]) -> list[str]:
    """The Markdown fragment: every family's leave-one-route-out results (worst held-out route first), then the
    shipped rule's precision, recall and checks' time per route."""
    from netvlad.places.loop_closure import LoopClosureConfig

    cols = {label: columns(rows) for label, rows in records.items()}
    lines = ["RANSAC and the null's draws are seeded by the frame index. Leave one route out: for each held-out "
             "route, the constants of each rule family chosen on the other routes (zero false closures there, "
             "single frame and L = 10, also one grid step looser in each constant; then the highest mean recall, "
             "then the loosest), applied to the held-out route. Worst held-out route first.", "",
             "| rule family | held-out route | constants chosen on the others | matching | closures | false | "
             "precision | recall |", "|---|---|---|---|---:|---:|---:|---:|"]
    shipped = LoopClosureConfig()
    shipped_family = SHIPPED
    for family, margin in [*((name, True) for name in FAMILIES), (shipped_family, False)]:
        results = []
        name = family if margin else f"{family}, picked without the margin"
        for held, (rule, per_label) in leave_one_out(cols, family, margin).items():
            if rule is None:
                results.append(((float("inf"), 0.0), f"| {name} | {held} | none of the grid is safe on the others "
                                "| | | | | |"))
                continue
            text = _constants(rule)
            for label, (true, false, positives) in per_label.items():
                worst = (false, -true / max(positives, 1))
                results.append((worst, f"| {name} | {held} | {text} | {label.split('/')[1]} | {true + false} | "
                                f"{false} | {_percent(true, true + false)} | {_percent(true, positives)} |"))
        lines += [row for _, row in sorted(results, key=lambda r: r[0], reverse=True)]
    family = shipped_family
    rule = {"z": shipped.min_distinctiveness, "consistency": shipped.min_consistency, "own": shipped.min_geometric,
            "support": shipped.min_support}
    picked = {margin: pick(cols, family, margin) for margin in (True, False)}
    lines += ["", f"Picked on every route, family “{family}”: with the margin "
              f"{_constants(picked[True])}; without it {_constants(picked[False])}. The shipped rule: "
              f"distinctiveness ≥ {rule['z']:g}, consistency ≥ {rule['consistency']:g}, inliers ≥ "
              f"{shipped.min_inliers} and ≥ {rule['own']:g} × the frame's null ({shipped.null_samples} random map "
              f"frames and the runner-up place), the strongest {shipped.cells} cells a frame, and ≥ "
              f"{rule['support']:g} of the last {WINDOW} frames passing on their own on the path, on every route:",
              "",
              "| route | matching | closures | false | precision | recall |", "|---|---|---:|---:|---:|---:|"]
    for label, c in cols.items():
        true, false, positives = decide(c, family, rule)
        route, matching = label.split("/")
        lines.append(f"| {route} | {matching} | {true + false} | {false} | {_percent(true, true + false)} | "
                     f"{_percent(true, positives)} |")
    return lines


def _constants(rule: dict | None) -> str:
    return "none of the grid" if rule is None else ", ".join(f"{key} {value:g}" for key, value in rule.items())


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "—"
