"""Learning curves per loss normalisation: validation Recall@1/5 after every ``--every`` training queries, over seeds.

    python -m benchmarks learning --quick                         # CI-sized: a generated toy set, seconds
    nice -n 10 python -m benchmarks learning --setup nordland     # the Nordland recipe (configs/nordland.yaml)
    nice -n 10 python -m benchmarks learning --setup alexnet      # AlexNet from scratch, every layer trained

Each curve trains with the library's own loop pieces (cache refresh every ``cache_refresh`` queries, mining,
SGD steps) and validates between steps; the k-means initialisation of a seed is shared by its variants, so the
curves of one seed start from the same model. Writes ``--out``/curves.json (and curves.png with matplotlib).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import REPO, SHARED_DATA, add_results_option
from netvlad.data import open_dataset
from netvlad.train import loop
from netvlad.train.frozen import FrozenFeatures
from netvlad.train.sets import holdout_last
from netvlad.train.train_config import LOSS_NORMALIZATIONS, TrainConfig, read_config_file

# logging the entry sets up (benchmarks.__main__): each curve's progress, without the loops' own lines
LOG_LEVEL = logging.INFO
QUIET_LOGGERS = ("netvlad.train.loop", "netvlad.extract.clusters", "netvlad.train.sets")

NORDLAND = SHARED_DATA / "nordland"
# AlexNet from scratch as issue 20 compared it with Nanne/pytorch-NetVlad: K = 64, 128 × 256, every layer trained.
ALEXNET = dict(backbone="alexnet", pretrained=False, train_from=0, num_clusters=64, resize="fixed", size=(128, 256),
               val_places=400, margin=0.1, num_negatives=10, negative_samples=1000, cache_refresh=1000,
               optimizer="sgd", lr=1e-4, momentum=0.9, weight_decay=1e-3, batch_tuples=4, batch_size=16,
               precompute_frozen=False, cluster_images=500)


@contextlib.contextmanager
def setup(name: str) -> Iterator[tuple[TrainConfig, object]]:
    """The training config and the (train + validation) dataset of a named setup, for a ``with`` block (quick: a
    generated toy set in a temporary folder, removed when the block ends)."""
    if name == "quick":
        from tests.train.conftest import TINY, make_tiny_dataset

        with tempfile.TemporaryDirectory(prefix="learning-quick-") as folder:
            dataset = make_tiny_dataset(Path(folder), places=24)
            yield TrainConfig(**(TINY | {"cache_refresh": 8, "val_places": 8})), dataset
        return
    dataset = open_dataset(NORDLAND, database="summer", queries="winter")
    if name == "nordland":
        yield TrainConfig.from_dict(read_config_file(REPO / "configs" / "nordland.yaml"), "nordland.yaml"), dataset
    else:
        yield TrainConfig(**ALEXNET), dataset


def validate_now(run: loop.Run, queries: int) -> dict:
    """One curve point: Recall@1/5/10 after ``queries`` training queries."""
    recalls = loop.validate_epoch(run, queries)
    return {"queries": queries, **{f"r{n}": r for n, r in recalls.items()}}


def curve(config: TrainConfig, train, val, run_dir: Path, queries: int, every: int) -> dict:
    """Validation recalls every ``every`` of ``queries`` training queries, for one config (one seed, one variant)."""
    run, state = loop.build_run(config, train, val, run_dir, "cpu", resume=False, progress=False)
    order = state.rng.permutation(run.data.query_ids)[:queries]
    points, started, violating, mark = [validate_now(run, 0)], time.perf_counter(), [], every
    for start in range(0, len(order), config.cache_refresh):
        chunk = order[start:start + config.cache_refresh]
        loop.refresh_and_mine(run, state, chunk)
        position = {q: start + i for i, q in enumerate(chunk)}  # query id -> its place in the order
        firsts = [position[q] for q in state.tuples.queries[::config.batch_tuples]]  # each batch's first query
        violating.append(float((state.tuples.negatives >= 0).sum(1).mean()) if len(state.tuples) else 0.0)
        for b in range(len(firsts)):
            loop.train_batch(run, state)
            done = firsts[b + 1] if b + 1 < len(firsts) else start + len(chunk)  # queries trained on (or skipped)
            if done >= mark:
                points.append(validate_now(run, done // every * every))
                mark = done // every * every + every
        state.tuples = None
        if start + len(chunk) >= mark:  # a chunk whose last queries were all skipped
            points.append(validate_now(run, (start + len(chunk)) // every * every))
            mark = (start + len(chunk)) // every * every + every
    if points[-1]["queries"] != len(order):
        points.append(validate_now(run, len(order)))
    run.log.close()
    return {"points": points, "seconds": round(time.perf_counter() - started, 1),
            "mined_negatives_per_tuple": violating, "alpha": run.model.pool.alpha}


def parse_variant(text: str) -> tuple[str, float]:
    """``"violating_mean@10"`` -> (normalisation, lr multiplier); no ``@``: the setup's lr."""
    name, _, scale = text.partition("@")
    if name not in LOSS_NORMALIZATIONS:
        raise argparse.ArgumentTypeError(f"{name!r}: not one of {', '.join(LOSS_NORMALIZATIONS)}")
    return name, float(scale or 1.0)


def share_frozen_features(cache: Path | None = None) -> None:
    """Compute the frozen stages' features once for all curves (they are pretrained and never trained); with
    ``cache``, also across processes: read from that .npz when it holds the same images, else computed by the first
    process to lock it and written there (atomically) for the others."""
    compute, memo = loop.compute_frozen, {}

    def shared(model, paths, *args, **kwargs):
        ordered = list(dict.fromkeys(Path(p) for p in paths))
        key = tuple(str(p.resolve()) for p in ordered)  # the same images under a symlinked root match too
        if key in memo:
            return memo[key]
        if cache is None:
            memo[key] = compute(model, paths, *args, **kwargs)
            return memo[key]
        with open(cache.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait for the first process's features
            if cache.is_file():
                stored = np.load(cache)
                if tuple(stored["paths"]) == key:
                    memo[key] = FrozenFeatures(ordered, stored["array"])
            if key not in memo:
                memo[key] = compute(model, paths, *args, **kwargs)
                partial = cache.with_name(cache.stem + ".partial.npz")
                np.savez(partial, paths=np.array(key), array=memo[key].array)
                partial.replace(cache)
        return memo[key]

    loop.compute_frozen = shared


def run_all(name: str, variants: list[str], seeds: list[int], queries: int, every: int, out: Path,
            frozen_cache: Path | None = None, init_model: Path | None = None) -> dict:
    """Every (seed, variant) curve of a setup; a seed's k-means model is computed once and shared."""
    with setup(name) as (base, dataset):
        if base.pretrained:  # random frozen stages would differ per seed
            share_frozen_features(frozen_cache)
        train, val = holdout_last(dataset, base.val_places)
        tag = "" if seeds == [0, 1, 2] or name == "quick" else "-seed" + "-".join(map(str, seeds))
        tag += "" if len(variants) == 3 else "-" + "-".join(variants)
        results = {"setup": name, "config": base.to_dict(), "queries": queries, "every": every,
                   "threads": torch.get_num_threads(), "curves": {}}
        for seed in seeds:
            init = str(init_model) if init_model else None
            for variant in variants:
                normalization, scale = parse_variant(variant)
                config = dataclasses.replace(base, seed=seed, loss_normalization=normalization, init_model=init,
                                             epochs=1, lr=base.lr * scale, tensorboard=False, checkpoint_every=10**6)
                run_dir = out / name / f"{variant}-seed{seed}"
                result = curve(config, train, val, run_dir, queries, every)
                init = init or str(run_dir / "init.safetensors")
                results["curves"].setdefault(variant, {})[str(seed)] = result
                logging.info("%s %s seed %d: %s (%.0f s)", name, variant, seed,
                             " ".join(f"{p['queries']}:{p['r1']:.1f}/{p['r5']:.1f}" for p in result["points"]),
                             result["seconds"])
                (out / f"{name}{tag}.json").write_text(json.dumps(results, indent=1))
        return results


def merge(files: list[Path]) -> dict:
    """One result from per-seed result files of the same setup (run as parallel processes)."""
    parts = [json.loads(f.read_text()) for f in files]
    merged = dict(parts[0], curves={})
    for part in parts:
        for variant, by_seed in part["curves"].items():
            merged["curves"].setdefault(variant, {}).update(by_seed)
    return merged


def from_logs(folders: list[Path], queries: int) -> dict:
    """Curves read back from the runs' ``log.jsonl`` validation events up to ``queries`` training queries (also of
    curves cut short): each folder holds ``VARIANT-seedN`` run folders."""
    results = {"setup": folders[0].name, "curves": {}}
    for run_dir in sorted(d for folder in folders for d in folder.iterdir() if (d / "log.jsonl").is_file()):
        variant, _, seed = run_dir.name.rpartition("-seed")
        events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        points = [{"queries": e["epoch"], "r1": e["recall@1"], "r5": e["recall@5"], "r10": e["recall@10"]}
                  for e in events if e.get("event", e.get("kind")) == "validation" and e["epoch"] <= queries]
        if points:
            results["curves"].setdefault(variant, {})[seed] = {"points": points}
    return results


def _sd(values: np.ndarray) -> float:
    """Sample standard deviation (0 for one value)."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summary(results: dict) -> list[str]:
    """Markdown rows: per variant and point, R@1 and R@5 as mean ± sample sd over the seeds that reached it."""
    rows = ["| variant | queries | seeds | R@1 mean ± sd | R@5 mean ± sd |", "|---|---:|---:|---:|---:|"]
    for variant, by_seed in results["curves"].items():
        curves = list(by_seed.values())
        for i in range(max(len(c["points"]) for c in curves)):
            reached = [c["points"][i] for c in curves if i < len(c["points"])]
            r1, r5 = (np.array([p[key] for p in reached]) for key in ("r1", "r5"))
            rows.append(f"| {variant} | {reached[0]['queries']} | {len(reached)} | {r1.mean():.1f} ± {_sd(r1):.1f} | "
                        f"{r5.mean():.1f} ± {_sd(r5):.1f} |")
    return rows


def plot(results: dict, path: Path) -> None:
    """R@1 and R@5 curves, mean ± sd band over seeds, one line per variant (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for variant, by_seed in results["curves"].items():
        curves = list(by_seed.values())
        longest = max(curves, key=lambda c: len(c["points"]))["points"]
        x = [p["queries"] for p in longest]
        for ax, key in zip(axes, ("r1", "r5"), strict=True):  # each point over the seeds that reached it
            reached = [np.array([c["points"][i][key] for c in curves if i < len(c["points"])]) for i in range(len(x))]
            mean, sd = np.array([r.mean() for r in reached]), np.array([_sd(r) for r in reached])
            ax.plot(x, mean, marker="o", label=f"{variant} ({len(curves)} seeds)")
            ax.fill_between(x, mean - sd, mean + sd, alpha=0.2)
            ax.set(xlabel="training queries", ylabel=f"validation Recall@{key[1:]} (%)")
    axes[0].set_title(f"{results['setup']}: mean ± sd over the seeds that reached each point")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--quick", action="store_true", help="CI-sized: generated toy set, 2 seeds, 16 queries")
    parser.add_argument("--setup", choices=("nordland", "alexnet"), default="nordland")
    parser.add_argument("--variants", nargs="+", default=list(LOSS_NORMALIZATIONS), metavar="NORM[@LR_SCALE]",
                        help=f"loss normalisations ({', '.join(LOSS_NORMALIZATIONS)}), each optionally with a "
                             "multiplier of the setup's lr, e.g. violating_mean@10")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--queries", type=int, default=1000, help="training queries per curve")
    parser.add_argument("--every", type=int, default=250, help="validate after every this many queries")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frozen-cache", type=Path, help=".npz of the frozen features, shared by processes")
    parser.add_argument("--init-model", type=Path, help="start every curve from this k-means model (one seed)")
    parser.add_argument("--from-logs", nargs="+", type=Path, metavar="FOLDER",
                        help="only read the curves back from FOLDER/VARIANT-seedN/log.jsonl (runs cut short too), "
                             "up to --queries")
    parser.add_argument("--merge", nargs="+", type=Path, help="only merge these result files (one per seed) and plot")
    parser.add_argument("--out", type=Path, default=Path("runs/learning"))
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options."""
    torch.set_num_threads(args.threads)
    name, seeds, queries, every = args.setup, args.seeds, args.queries, args.every
    if args.quick:
        name, seeds, queries, every = "quick", [0, 1], 16, 8
    for variant in args.variants:
        parse_variant(variant)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_logs:
        results = from_logs(args.from_logs, queries)
        name = results["setup"]
        (args.out / f"{name}.json").write_text(json.dumps(results, indent=1))
    elif args.merge:
        results = merge(args.merge)
        name = results["setup"]
        (args.out / f"{name}.json").write_text(json.dumps(results, indent=1))
    else:
        results = run_all(name, args.variants, seeds, queries, every, args.out, args.frozen_cache, args.init_model)
    try:
        plot(results, args.out / f"{name}.png")
    except ImportError:
        logging.info("matplotlib not installed: no plot")
    return "\n".join(summary(results))
