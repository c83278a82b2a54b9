"""The Nordland training recipe against the settings it replaced: validation Recall@1 after the last epoch, per
setting and seed, each a full ``netvlad.train.loop.train`` run (the function ``netvlad train`` calls) from
``configs/nordland.yaml`` with one setting changed.

    nice -n 10 python -m benchmarks nordland-recipe --keep /tmp/nordland-recipe --results docs/results
    python -m benchmarks nordland-recipe --quick          # a generated toy set, pretrained MobileNetV2, seconds

The frozen stages' features (pretrained, never trained) are computed once and shared by every run (with
``--keep``, through ``DIR/frozen.npz``, also across processes). With ``--keep DIR`` each finished run leaves
``DIR/SETTING-seedN/result.json`` and a rerun skips it, so a run cut short continues where it stopped; without it
the runs go to a temporary folder, deleted after.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import REPO, SHARED_DATA, add_results_option
from benchmarks.learning import share_frozen_features
from netvlad.data import open_dataset
from netvlad.train import loop
from netvlad.train.train_config import TrainConfig, read_config_file

LOG_LEVEL = logging.INFO
QUIET_LOGGERS = ("netvlad.train.loop", "netvlad.extract.clusters", "netvlad.train.sets", "netvlad.train")

NORDLAND = SHARED_DATA / "nordland"
NOTHING_EXCLUDED = dict(exclude_dark_below=None, exclude_duplicates_above=None)

# name: (row label, with {budget} the random budget per epoch; the change to configs/nordland.yaml)
SETTINGS = {
    "random": ("{budget:,} random queries per epoch, nothing excluded", NOTHING_EXCLUDED | {"epoch_queries": "budget"}),
    "excluded": ("ambiguous images excluded, {budget:,} queries per epoch", {"epoch_queries": "budget"}),
    "excluded-halved": ("ambiguous images excluded, {budget:,} queries, lr halved after epoch 1",
                        {"epoch_queries": "budget", "lr_step": 1, "lr_gamma": 0.5}),
    "all": ("nothing excluded, every query per epoch", NOTHING_EXCLUDED | {"epoch_queries": None}),
    "recipe": ("ambiguous images excluded, every usable query per epoch: `configs/nordland.yaml`", {}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), metavar="SETTING",
                        help=f"rows to run ({', '.join(SETTINGS)}; default all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default 0 1 2)")
    parser.add_argument("--budget", type=int, default=1000,
                        help="queries per epoch of the settings with a random budget (default 1000)")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="run folders and shared frozen features here, kept: a rerun skips finished runs")
    parser.add_argument("--quick", action="store_true",
                        help="a generated toy set (24 places), K=4 at 64×64, 2 epochs of 8 queries: seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    add_results_option(parser)


def setup(quick: bool, work: Path):
    """The recipe's config and the Nordland dataset (summer database, winter queries), or the toy equivalents."""
    if quick:
        from tests.train.conftest import TINY, make_tiny_dataset

        dataset = make_tiny_dataset(work / "toy", places=24)
        config = TrainConfig(**(TINY | dict(pretrained=True, precompute_frozen=True, epochs=2, val_places=8,
                                            cache_refresh=8, lr_step=5, exclude_dark_below=25,
                                            exclude_duplicates_above=0.97)))
        return config, dataset
    if not NORDLAND.is_dir():
        raise SystemExit(f"{NORDLAND}: Nordland is not there (set NETVLAD_SHARED_DATA to the shared data folder)")
    config = TrainConfig.from_dict(read_config_file(REPO / "configs" / "nordland.yaml"), "nordland.yaml")
    return config, open_dataset(NORDLAND, database="summer", queries="winter")


def setting_config(base: TrainConfig, name: str, seed: int, budget: int) -> TrainConfig:
    """``base`` with setting ``name``'s change, the seed, and no tensorboard or intermediate checkpoints."""
    change = {key: budget if value == "budget" else value for key, value in SETTINGS[name][1].items()}
    return dataclasses.replace(base, **change, seed=seed, tensorboard=False, checkpoint_every=10**6)


def final_recall(run_dir: Path) -> float:
    """Validation Recall@1 of the last epoch, from the run's ``log.jsonl``."""
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    validations = [e for e in events if e.get("event", e.get("kind")) == "validation"]
    if not validations:
        raise RuntimeError(f"{run_dir / 'log.jsonl'}: no validation event")
    return float(max(validations, key=lambda e: e["epoch"])["recall@1"])


def run_one(config: TrainConfig, dataset, run_dir: Path) -> dict:
    """Train one (setting, seed) into ``run_dir`` -> its result (read back when ``result.json`` is there)."""
    done = run_dir / "result.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    if run_dir.exists():  # an unfinished run: start it again from nothing
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    loop.train(config, dataset, run_dir, progress=False)
    result = {"recall@1": final_recall(run_dir), "seconds": round(time.perf_counter() - started, 1)}
    done.write_text(json.dumps(result), encoding="utf-8")
    return result


def table(results: dict[str, dict[int, dict]], seeds: list[int], budget: int) -> str:
    """One row per setting: Recall@1 per seed, then mean ± sample sd."""
    head = "| training set and budget | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd |"
    lines = [head, "|---|" + "---:|" * (len(seeds) + 1)]
    for name, by_seed in results.items():
        values = np.array([by_seed[s]["recall@1"] for s in seeds])
        sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        cells = " | ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {SETTINGS[name][0].format(budget=budget)} | {cells} | {values.mean():.1f} ± {sd:.1f} |")
    return "\n".join(lines)


def describe(config: TrainConfig, val_places: int, quick: bool) -> str:
    data = ("A generated toy set" if quick else "Nordland (winter queries → summer database, never filtered)")
    backbone = f"{config.backbone} ({'ImageNet' if config.pretrained else 'random'})"
    return (f"{data}: validation Recall@1 (%) after epoch {config.epochs} on the last {val_places} places; "
            f"{backbone} + NetVLAD K = {config.num_clusters}, {config.size[0]} × {config.size[-1]}, lr {config.lr:g}, "
            f"{config.epochs} epochs, one setting changed per row:")


def run(args: argparse.Namespace) -> str:
    """Every (setting, seed) run -> the Markdown table (the header's seed: the seeds)."""
    torch.set_num_threads(args.threads)
    args.seed = ", ".join(map(str, args.seeds))
    work = args.keep or Path(tempfile.mkdtemp(prefix="netvlad-nordland-recipe-"))
    work.mkdir(parents=True, exist_ok=True)
    budget = 8 if args.quick else args.budget
    compute = loop.compute_frozen
    try:
        base, dataset = setup(args.quick, work)
        share_frozen_features(work / "frozen.npz")
        results: dict[str, dict[int, dict]] = {}
        for name in args.settings:
            for seed in args.seeds:
                result = run_one(setting_config(base, name, seed, budget), dataset, work / f"{name}-seed{seed}")
                results.setdefault(name, {})[seed] = result
                logging.info("%s seed %d: R@1 %.2f (%.0f s)", name, seed, result["recall@1"], result["seconds"])
        return describe(base, base.val_places, args.quick) + "\n\n" + table(results, args.seeds, budget)
    finally:
        loop.compute_frozen = compute  # the sharing ends with this benchmark
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
