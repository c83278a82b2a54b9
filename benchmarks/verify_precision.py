"""The patch projection's precision: `--verify speed` with its 512 × K·D whitening product in float32 (the default)
against bfloat16, side by side on every set of the re-ranking suite and on the Tokyo day/night pair.

Per set: the suite's model and single-frame shortlist (top ``--top``), one patch whitening (fitted once, cached in
``CACHE/clusters``, as the suite does), then one re-ranking pass per precision into its own patch store; Recall@N of
the default λ and top (re-fused from the pass's raw patch scores), how many top-1s and re-ranked lists differ from
float32's, and the thread CPU seconds of each pass (database and query patches, matching). The Tokyo row is its
night query among Gardens Point and Nordland images and its day image (one query: Recall 0 or 100), with the
Gardens Point model.

    python -m benchmarks verify-precision [--cache DIR] [--datasets gardens_point city_fog ...] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import SHARED_DATA, add_results_option, work_dir
from netvlad.eval.recall import evaluate_descriptors, recall_at_n
from netvlad.match.verify.patches import PatchExtractor
from netvlad.match.verify.presets import TOP
from netvlad.match.verify.run import patch_whitening, rescore_ranking
from netvlad.pipeline.benchmark.run import describe_spec, only_condition, open_spec, verify_pass
from netvlad.pipeline.benchmark.suite import load_suite

logger = logging.getLogger(__name__)
LOG_LEVEL = logging.INFO  # each set and pass as it finishes
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The suite, its cache, the sets and the shortlist."""
    parser.add_argument("--suite", default="reranking", help="the suite whose sets, models and λ rows are used")
    parser.add_argument("--cache", type=Path, default=work_dir("verify-precision"),
                        help="stores, cities, k-means and whitening cache (default: the benchmarks' work folder)")
    parser.add_argument("--datasets", nargs="*", default=None, help="the suite's sets to run (default: all), "
                        "then tokyo_pair")
    parser.add_argument("--top", type=int, default=100, help="candidates re-ranked per query in each pass")
    parser.add_argument("--out", type=Path, default=None, help="the rows as JSON, rewritten after each set")
    add_results_option(parser)


def compare(passes: dict, ranked: np.ndarray, distances: np.ndarray, positives, preset, ns) -> dict:
    """One set's row: Recall@N per precision at ``preset``'s λ and :data:`TOP`, lists and top-1s unlike float32's."""
    row, fused = {}, {}
    for name, (found, seconds) in passes.items():
        fused[name], _ = rescore_ranking(found.raw, ranked, distances, preset, min(TOP, found.top))
        recall = recall_at_n(fused[name], positives, [n for n in ns if n <= fused[name].shape[1]])
        row[name] = {"recall": {n: round(float(r), 2) for n, r in recall.items()}, "cpu_s": round(seconds, 2)}
    for name in passes:
        row[name]["top1_changed"] = int((fused[name][:, 0] != fused["float32"][:, 0]).sum())
        row[name]["lists_reordered"] = int((fused[name] != fused["float32"]).any(1).sum())
    return row


def run_passes(model, preset_family, dataset, single, top, ns, store: Path, radius, cache: Path) -> dict:
    """{precision: (VerifyPass, thread CPU seconds)} over the same shortlist and whitening."""
    whitening = patch_whitening(model, preset_family.preset(), dataset.database.paths(), cache / "clusters")
    out = {}
    for name, dtype in PRECISIONS.items():
        cast = copy.deepcopy(whitening).to(dtype)
        start = time.thread_time()
        extractor = PatchExtractor(model, preset_family.preset(), cast)
        found = verify_pass(dataset, single, top, ns, extractor, store / f"projection-{name}", radius)
        out[name] = (found, time.thread_time() - start)
        logger.info("%s pass: %.1f CPU s", name, out[name][1])
    return out


def tokyo(suite, cache: Path, family, ns) -> dict:
    """The Tokyo night query among 75 unrelated images and its day image, with the Gardens Point model."""
    from netvlad.data.dataset import GeoDataset, ImageList
    from netvlad.extract import extract_descriptors

    spec = next(s for s in suite.datasets if s.name == "gardens_point")
    _, _, model, store = describe_spec(suite, spec, open_spec(spec, SHARED_DATA, cache), cache)
    left = sorted((SHARED_DATA / "gardens_point" / "day_left").iterdir())[::8]
    summer = sorted((SHARED_DATA / "nordland" / "summer").iterdir())[::48]
    root = SHARED_DATA
    names = ["tokyo_pair/tokyo_db.png"] + [str(p.relative_to(root)) for p in left + summer]
    far = np.stack([np.arange(len(names)) * 1000.0, np.zeros(len(names))], 1)  # the day image at the query's place
    dataset = GeoDataset("tokyo_pair", ImageList(root, tuple(names), far),
                         ImageList(root, ("tokyo_pair/tokyo_query.jpg",), np.zeros((1, 2))))
    db = extract_descriptors(model, dataset.database.paths())
    q = extract_descriptors(model, dataset.queries.paths())
    positives = dataset.positives(25.0)
    single = evaluate_descriptors(db, q, positives, ns, k=min(len(db), 100))
    passes = run_passes(model, family, dataset, single, single.ranked.shape[1], ns, store / "tokyo", 25.0, cache)
    row = compare(passes, single.ranked, single.distances, positives, family.preset(), ns)
    row["queries"], row["global_rank"] = 1, int(np.flatnonzero(single.ranked[0] == 0)[0]) + 1
    return row


def run(args: argparse.Namespace) -> str:
    suite = load_suite(args.suite)
    torch.manual_seed(suite.seed)
    ns = list(suite.recall)
    default = next(m for m in suite.methods if m.verify is not None)
    family = type(default)(**{**default.__dict__, "verify": {**default.verify, "top": args.top,
                                                             "global_weight": None}})
    preset = family.preset()
    rows: dict = {}
    known = [s.name for s in suite.datasets] + ["tokyo_pair"]
    wanted = args.datasets or known
    if unknown := [name for name in wanted if name not in known]:
        raise SystemExit(f"--datasets: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    for name in wanted:
        start = time.perf_counter()
        if name == "tokyo_pair":
            rows[name] = tokyo(suite, args.cache, family, ns)
        else:
            spec = next(s for s in suite.datasets if s.name == name)
            opened = open_spec(spec, SHARED_DATA, args.cache)
            db, q, model, store = describe_spec(suite, spec, opened, args.cache)
            dataset, q = only_condition(spec, opened, q)
            single = evaluate_descriptors(db, q, dataset.positives(spec.radius), ns, k=min(args.top, len(db)))
            passes = run_passes(model, family, dataset, single, single.ranked.shape[1], ns, store, spec.radius,
                                args.cache)
            rows[name] = compare(passes, single.ranked, single.distances, dataset.positives(spec.radius), preset, ns)
            rows[name]["queries"] = len(q)
        rows[name]["wall_s"] = round(time.perf_counter() - start, 1)
        logger.info("%s: %s", name, rows[name])
        if args.out is not None:
            args.out.write_text(json.dumps(rows, indent=1))
    return table(rows, ns, preset)


def table(rows: dict, ns, preset) -> str:
    """The Markdown table: one line per set, float32 against bfloat16."""
    lines = [f"`speed` preset, λ {preset.global_weight}, top {TOP} re-ranked of each query's global top 100; "
             "CPU s: thread CPU time of the pass (database and query patches, matching).", "",
             "| set | queries | " + " | ".join(f"R@{n} f32 / bf16" for n in ns)
             + " | top-1 changed | lists reordered | CPU s f32 / bf16 |",
             "|" + "---|" * (len(ns) + 5)]
    for name, row in rows.items():
        f, b = row["float32"], row["bfloat16"]
        lines.append(f"| {name} | {row['queries']} | " + " | ".join(
            f"{f['recall'].get(n, float('nan')):.2f} / {b['recall'].get(n, float('nan')):.2f}" for n in ns)
            + f" | {b['top1_changed']} | {b['lists_reordered']} | {f['cpu_s']:.0f} / {b['cpu_s']:.0f} |")
    return "\n".join(lines)
