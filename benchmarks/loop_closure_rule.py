"""The default loop-closure decision on routes with known revisits: its constants chosen leave-one-route-out, its
precision, recall and added time per route.

Routes (each one stream at 1 fps, ``--exclude-recent 60``, off-the-shelf MobileNetV2 + GeM):
- ``gardens``: Gardens Point day_left frames 0–199 then day_right (the same places, the other side of the path),
  longest side 320 px, correct within ±2 frames;
- ``city``: the generated city's loop drive (``netvlad generate --size small --route loop``: every street by day,
  half of them again at dusk and in winter), 160 × 120 px, correct within 25 m;
- ``nordland``: Nordland validation places 2000–2399, summer then winter, 64 × 32 px, only the same place correct.

Each route runs single-frame and with ``--sequence 10``, once, with every check computed for every frame (a
permissive rule); the decision of any rule is then read off those values. For each held-out route, the rule whose
constants give zero false closures, single frame and with ``--sequence 10``, on the *other* routes, with a margin
(also with each constant one grid step looser), and the highest mean recall there is applied to it; then the rule
picked the same way on every route, and the shipped defaults' precision, recall and check times per route.

    python -m benchmarks loop-closure-rule [--work DIR] [--threads 1] [--json rule.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from benchmarks.common import SHARED_DATA, add_results_option, work_dir

DATA = SHARED_DATA
EXCLUDE = 60.0
GRID = {"min_distinctiveness": (1.5, 2.0, 2.5, 3.0, 3.5), "max_ratio": (0.8, 0.85, 0.875, 0.9, 0.925, 0.95, 0.975),
        "min_inliers": (12, 16, 20, 24, 32), "min_consistency": (0.5, 0.6, 0.7, 0.8, 0.9)}


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
    city = work / "city"
    if not (city / "frames" / "frames.csv").is_file():
        from netvlad.data.synthetic import CityConfig
        from netvlad.data.synthetic.loop import write_loop_route

        write_loop_route(CityConfig.preset("small", seed=0), city)
    return {"gardens": (gardens / "frames", "longest", (320,), 2.0),
            "city": (city / "frames", "none", (), 25.0),
            "nordland": (nordland / "frames", "none", (), 0.5)}


def permissive():
    """A rule that accepts everything, so that every check is computed for every frame."""
    from netvlad.places.loop_closure import LoopClosureConfig

    return LoopClosureConfig(min_distinctiveness=float("-inf"), max_ratio=float("inf"), min_inliers=0,
                             min_consistency=0.0)


def record(frames: Path, resize: str, size: tuple[int, ...], radius: float, sequence: int | None) -> list[dict]:
    """Per frame: its checks, whether its match is correct, whether it has an earlier place, the checks' time."""
    from netvlad.data.frames import FrameSource
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing
    from netvlad.places.stream import StreamConfig, StreamMatcher

    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="gem",
                                   preprocessing=Preprocessing(resize=resize, size=size)), pretrained=True)
    config = StreamConfig(exclude_recent=EXCLUDE, radius=radius, sequence=sequence, decision=permissive())
    matcher = StreamMatcher(model, config)
    out = []
    for result in matcher.run(FrameSource(frames)):
        c = result.checks
        out.append({"frame": result.frame, "match": result.match, "correct": bool(result.correct),
                    "positive": bool(result.has_positive),
                    "consistency": c.consistency, "distinctiveness": c.distinctiveness, "ratio": c.ratio,
                    "inliers": c.inliers, "check_ms": c.check_ms})
    return out


def decide(rows: list[dict], rule) -> tuple[int, int, int]:
    """(true, false, positives) closures of ``rule`` (a LoopClosureConfig) over recorded frames."""
    true = false = 0
    for r in rows:
        if r["inliers"] is None:
            continue
        accepted = (r["consistency"] >= rule.min_consistency and r["distinctiveness"] >= rule.min_distinctiveness
                    and r["ratio"] <= rule.max_ratio and r["inliers"] >= rule.min_inliers)
        true += accepted and r["correct"]
        false += accepted and not r["correct"]
    return true, false, sum(r["positive"] for r in rows)


def rules():
    """Every rule of the grid as (grid indices, LoopClosureConfig), the shipped defaults' other fields kept."""
    from netvlad.places.loop_closure import LoopClosureConfig

    keys = list(GRID)
    for index in itertools.product(*(range(len(v)) for v in GRID.values())):
        values = {key: GRID[key][i] for key, i in zip(keys, index, strict=True)}
        yield index, replace(LoopClosureConfig(), **values)


def looser(index: tuple[int, ...]) -> list[tuple[int, ...]] | None:
    """The grid neighbours one step looser in each constant (None at the loose edge of the ratio)."""
    out = []
    for k, key in enumerate(GRID):
        step = 1 if key == "max_ratio" else -1  # a larger ratio, or a smaller minimum, accepts more
        i = index[k] + step
        if i >= len(GRID[key]):
            return None
        if i >= 0:
            out.append(index[:k] + (i,) + index[k + 1:])
    return out


def pick(records: dict[str, list[dict]]):
    """The rule with zero false closures on every route of ``records``, single frame and with ``--sequence 10`` —
    and a margin: also with each constant one grid step looser — and the highest mean recall over them."""
    table = {index: (rule, {name: decide(rows, rule) for name, rows in records.items()}) for index, rule in rules()}

    def safe(index):
        return not any(false for _, false, _ in table[index][1].values())

    best, best_recall = None, -1.0
    for index, (rule, results) in table.items():
        neighbours = looser(index)
        if neighbours is None or not safe(index) or not all(safe(n) for n in neighbours):
            continue
        recall = sum(t / max(p, 1) for t, _, p in results.values()) / len(results)
        if recall > best_recall:
            best, best_recall = rule, recall
    return best


def leave_one_out(records: dict[str, list[dict]]) -> dict[str, tuple]:
    """For each held-out route: (the rule picked on the others, its true, false, positives on the held-out one)."""
    names = sorted({name.split("/")[0] for name in records})
    out = {}
    for held in names:
        rule = pick({name: rows for name, rows in records.items() if not name.startswith(held + "/")})
        out[held] = (rule, {name: decide(rows, rule) for name, rows in records.items()
                            if name.startswith(held + "/")} if rule else {})
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--work", type=Path, default=work_dir("loop-closure-rule"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the recorded checks here")
    parser.add_argument("--load", type=Path, default=None, help="read recorded checks (--json) instead of running")
    add_results_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with the parsed options."""
    logging.basicConfig(level=logging.WARNING)
    import numpy as np
    import torch

    from netvlad.places.loop_closure import LoopClosureConfig

    torch.set_num_threads(args.threads)
    records = json.loads(args.load.read_text(encoding="utf-8")) if args.load else {}
    for name, (frames, resize, size, radius) in ({} if args.load else routes(args.work)).items():
        for sequence in (None, 10):
            label = f"{name}/{'single' if sequence is None else 'L=10'}"
            records[label] = record(frames, resize, size, radius, sequence)
            print(f"recorded {label}: {len(records[label])} frames", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(records) + "\n", encoding="utf-8")
    print("| held-out route | rule chosen on the others (z, ratio, inliers, consistency) | matching | "
          "closures | false | precision | recall |")
    print("|---|---|---|---:|---:|---:|---:|")
    for held, (rule, results) in leave_one_out(records).items():
        if rule is None:
            print(f"| {held} | no rule of the grid gives zero false closures on the others | | | | | |")
            continue
        text = f"{rule.min_distinctiveness:g}, {rule.max_ratio:g}, {rule.min_inliers}, {rule.min_consistency:g}"
        for name, (true, false, positives) in results.items():
            print(f"| {held} | {text} | {name.split('/')[1]} | {true + false} | {false} | "
                  f"{_percent(true, true + false)} | {_percent(true, positives)} |")
    shipped = LoopClosureConfig()
    chosen = pick(records)
    print(f"\nchosen on every route: z ≥ {chosen.min_distinctiveness:g}, ratio ≤ {chosen.max_ratio:g}, inliers ≥ "
          f"{chosen.min_inliers}, consistency ≥ {chosen.min_consistency:g}; shipped: z ≥ "
          f"{shipped.min_distinctiveness:g}, ratio ≤ {shipped.max_ratio:g}, inliers ≥ {shipped.min_inliers}, "
          f"consistency ≥ {shipped.min_consistency:g}")
    print("\n| route | matching | closures | false | precision | recall | checks p50 / p99 ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, rows in records.items():
        true, false, positives = decide(rows, shipped)
        times = np.array([r["check_ms"] for r in rows])
        route, matching = name.split("/")
        print(f"| {route} | {matching} | {true + false} | {false} | {_percent(true, true + false)} | "
              f"{_percent(true, positives)} | {np.percentile(times, 50):.1f} / {np.percentile(times, 99):.1f} |")
    return 0


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "—"
