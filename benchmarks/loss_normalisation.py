"""The training loss's normalisation across data: each recipe trained with each normalisation, evaluated on every
held-out set; the default is the variant whose worst held-out Recall@1 is highest.

    nice -n 10 python -m benchmarks loss-normalisation --seeds 0 --jobs 2 --results docs/results

Recipes (``--setups``), each shortened to one epoch of ``--queries`` queries:

- ``nordland``: configs/nordland.yaml (MobileNetV2 ImageNet + NetVLAD K = 64, 128 × 256, lr 3e-4), trained on the
  shared Nordland thumbnails' places 0–1999 (summer database, winter queries), validated on places 2000–2399;
- ``city``: ``netvlad demo``'s recipe (MobileNetV2 + NetVLAD K = 16, 120 × 160, lr 2e-4), trained on a generated
  small city's train split with dusk, autumn and rain queries against its day database.

Variants (``--variants``): ``NORM@SCALE``, a loss normalisation at SCALE × the recipe's lr; ``violating_mean@10``
takes about the step ``sum`` takes at the recipe's lr (the sum over a batch's ~10 violating triplets).

Held-out sets, every model on each: Nordland places 2000–2399 (winter queries → summer), Gardens Point day_right →
day_left (±2 frames), and another generated city (other seed, default size): its test split's night, winter and fog
queries against its day database. Each model sees images at its recipe's input size. Nothing is validated during
training: each model is its epoch's last weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, SHARED_DATA, add_results_option
from benchmarks.learning import parse_variant, share_frozen_features
from netvlad.files import atomic_write

LOG_LEVEL = logging.INFO
QUIET_LOGGERS = ("netvlad.train.loop", "netvlad.extract.clusters", "netvlad.train.sets", "netvlad.eval.recall",
                 "netvlad.train.ambiguous", "netvlad.data.synthetic")

SETUPS = ("nordland", "city")
CITY_CONDITIONS = ("night", "winter", "fog")
TRAIN_CONDITIONS = ("dusk", "autumn", "rain")  # the training city's queries: none of the held-out conditions
HELD_OUT = ("Nordland 2000–2399", "Gardens Point", *(f"city {c}" for c in CITY_CONDITIONS))
NS = (1, 5, 10)


def city(out: Path, size: str, seed: int, conditions: tuple[str, ...]) -> Path:
    """A generated city in ``out`` (reused when already there with the same configuration)."""
    from netvlad.data.synthetic import CityConfig, generate_city

    return generate_city(CityConfig.preset(size, seed=seed, query_conditions=conditions), out, False, workers=1)


def recipe(name: str, work: Path):
    """(base TrainConfig, training set) of a recipe."""
    from netvlad.data import open_dataset
    from netvlad.pipeline.demo_config import DemoConfig
    from netvlad.train.sets import holdout_last
    from netvlad.train.train_config import TrainConfig, read_config_file

    if name == "nordland":
        config = TrainConfig.from_dict(read_config_file(REPO / "configs" / "nordland.yaml"), "nordland.yaml")
        dataset = open_dataset(SHARED_DATA / "nordland", database="summer", queries="winter")
        train, _ = holdout_last(dataset, config.val_places)  # the validation places are a held-out set
        return config, train
    root = city(work / "city-train", "small", 0, TRAIN_CONDITIONS)
    return dataclasses.replace(DemoConfig().train_config, whitening_dim=None), open_dataset(root, split="train")


def held_out_sets(work: Path) -> dict:
    """name -> (dataset, the query conditions to keep or None)."""
    from netvlad.data import open_dataset

    gardens = SHARED_DATA / "gardens_point"
    nordland = open_dataset(SHARED_DATA / "nordland", database="summer", queries="winter")
    from netvlad.train.sets import holdout_last

    _, nordland_val = holdout_last(nordland, 400)
    held = city(work / "city-held-out", "default", 1, CITY_CONDITIONS)
    return {"Nordland 2000–2399": nordland_val,
            "Gardens Point": open_dataset(gardens, database="day_left", queries="day_right", frame_tolerance=2),
            "city": open_dataset(held, split="test")}


def evaluate_model(checkpoint: Path, sets: dict) -> dict:
    """Recall@1/5/10 of one trained model on every held-out set (the city per query condition)."""
    from netvlad.data.conditions import query_conditions
    from netvlad.eval import evaluate
    from netvlad.eval.recall import recall_by_condition
    from netvlad.models import load

    model = load(checkpoint).eval()
    out = {}
    for name, dataset in sets.items():
        result = evaluate(model, dataset, ns=NS, batch_size=16)
        if name != "city":
            out[name] = {f"r{n}": r for n, r in result.recall.items()}
            continue
        parts = recall_by_condition(result.ranked, result.positives, query_conditions(dataset), NS)
        for condition in CITY_CONDITIONS:
            if condition not in parts:
                raise RuntimeError(f"{dataset!r}: no {condition} queries to evaluate")
            out[f"city {condition}"] = {f"r{n}": r for n, r in parts[condition]["recall"].items()}
    return out


def train_variant(name: str, variant: str, seed: int, queries: int, work: Path) -> dict:
    """One recipe trained with one variant and seed, evaluated on every held-out set -> its row."""
    import torch

    from benchmarks.__main__ import set_up_logging
    from netvlad.train import train

    torch.set_num_threads(1)
    set_up_logging(sys.modules[__name__])  # a worker process of --jobs sets up its own
    base, train_set = recipe(name, work)
    share_frozen_features(work / f"frozen-{name}.npz")  # pretrained frozen stages: computed once for every variant
    normalization, scale = parse_variant(variant)
    # no validation: the epoch's last weights, not an epoch chosen on a held-out set (or the start, where nothing
    # improved the validation recall)
    config = dataclasses.replace(base, seed=seed, loss_normalization=normalization, lr=base.lr * scale, epochs=1,
                                 epoch_queries=queries, val_places=0, tensorboard=False, checkpoint_every=10**6)
    run_dir = work / name / f"{variant}-seed{seed}"
    checkpoint, kept = run_dir / "model.safetensors", (run_dir / "model.safetensors").is_file()
    if not kept:  # else trained to the end by an earlier run in the same --keep folder
        checkpoint = train(config, train_set, run_dir)
    stored = run_dir / "held-out.json"
    if kept and stored.is_file():
        recalls = json.loads(stored.read_text())
    else:
        recalls = evaluate_model(checkpoint, held_out_sets(work))
        atomic_write(stored, lambda tmp: tmp.write_text(json.dumps(recalls, indent=1)))
    logging.info("%s %s seed %d: %s%s", name, variant, seed,
                 " ".join(f"{k} {v['r1']:.1f}/{v['r5']:.1f}" for k, v in recalls.items()), " (kept)" * kept)
    return {"setup": name, "variant": variant, "lr": config.lr, "seed": seed, "kept": kept, "recalls": recalls}


def spread(values: list[float]) -> str:
    """``mean ± sd`` (the value alone for one seed)."""
    return f"{np.mean(values):.1f}" + (f" ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else "")


def table(rows: list[dict], queries: int) -> str:
    """Markdown: per recipe and variant, R@1 / R@5 on each held-out set and the worst R@1; then the pick."""
    head = "| recipe | normalisation @ lr | " + " | ".join(HELD_OUT) + " | worst R@1 |"
    lines = [f"R@1 / R@5 (%) after one epoch of at most {queries} training queries (the small city has fewer), "
             "mean ± sd over seeds:", "", head,
             "|---|---|" + "---:|" * (len(HELD_OUT) + 1)]
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["setup"], row["variant"]), []).append(row)
    worst_by_variant: dict[str, list[float]] = {}
    for (setup, variant), runs in groups.items():
        cells, worst = [], []
        for name in HELD_OUT:
            r1 = [r["recalls"][name]["r1"] for r in runs]
            r5 = [r["recalls"][name]["r5"] for r in runs]
            cells.append(f"{spread(r1)} / {spread(r5)}")
        worst = [min(r["recalls"][name]["r1"] for name in HELD_OUT) for r in runs]
        worst_by_variant.setdefault(variant, []).extend(worst)
        name, scale = parse_variant(variant)
        kept = " (kept)" if any(r.get("kept") for r in runs) else ""
        lines.append(f"| {setup} | `{name}` @ {runs[0]['lr']:.0e}{kept} | " + " | ".join(cells)
                     + f" | {spread(worst)} |")
    lines.append("")
    overall = {variant: min(w) for variant, w in worst_by_variant.items()}
    best = max(overall, key=overall.get)
    if any(row.get("kept") for row in rows):
        lines.append("Rows marked kept come from an earlier run in the same `--keep` folder: trained there, and "
                     "evaluated there where it stored the held-out recalls.")
    lines.append("Worst held-out Recall@1 over every recipe and seed: "
                 + ", ".join(f"`{v}` {w:.1f}" for v, w in overall.items())
                 + f" (`NORM@SCALE`: SCALE × the recipe's lr); highest: `{best}`.")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--setups", nargs="+", choices=SETUPS, default=list(SETUPS))
    parser.add_argument("--variants", nargs="+", default=["sum@1", "violating_mean@1", "violating_mean@10"],
                        metavar="NORM[@LR_SCALE]")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--queries", type=int, default=500, help="training queries (one epoch)")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (one process of one thread each)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder, deleted)")
    parser.add_argument("--threads", type=int, default=1)
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options."""
    for variant in args.variants:
        parse_variant(variant)
    work = args.keep or Path(tempfile.mkdtemp(prefix="loss-normalisation-"))
    work.mkdir(parents=True, exist_ok=True)
    # recipes interleaved, so that --jobs 2 trains both at once
    tasks = [(name, variant, seed) for seed in args.seeds for variant in args.variants for name in args.setups]
    try:
        for name in args.setups:  # data made once, before any worker needs it
            recipe(name, work)
        held_out_sets(work)
        columns = [list(column) for column in zip(*tasks, strict=True)]
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            rows = list(pool.map(train_variant, *columns, [args.queries] * len(tasks), [work] * len(tasks)))
        (work / "results.json").write_text(json.dumps(rows, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    args.seed = ", ".join(str(seed) for seed in args.seeds)
    return table(rows, args.queries)
