"""Training throughput: seconds per 1000 training queries, cache refreshes included (paper defaults).

    python -m benchmarks train                      # Nordland thumbnails at 128×256 (the recipe's setting)
    python -m benchmarks train --size 64 64 --clusters 4 --no-pretrained

Measures the costs separately on real images and combines them for a database of ``--database-size``:
a cache refresh every ``--refresh`` queries (database + those queries extracted) and one optimiser step per
``--batch-tuples`` tuples (query, positive, 10 negatives). By default the frozen stages' output is precomputed
(as training does; its one-off cost per image is printed apart); ``--full-backbone`` times the whole network.
Timing lives here, never in tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import SHARED_DATA, add_results_option
from netvlad.data import open_dataset
from netvlad.models import PlaceModel
from netvlad.train import TrainConfig
from netvlad.train.cache import ExtractOptions, extract
from netvlad.train.distributed import DistInfo
from netvlad.train.frozen import compute_frozen
from netvlad.train.loss import triplet_ranking_loss
from netvlad.train.mining import MinedTuples, mine
from netvlad.train.step import GroupEncoder, frozen_batchnorm_train, load_group, tuple_loss, use_channels_last

NORDLAND = SHARED_DATA / "nordland"


def time_extraction(model: PlaceModel, paths: list[Path], batch_size: int, frozen) -> float:
    """Seconds per image of cache extraction."""
    extract(model, paths[:batch_size], ExtractOptions(batch_size=batch_size, frozen=frozen))  # warm-up
    start = time.perf_counter()
    extract(model, paths, ExtractOptions(batch_size=batch_size, frozen=frozen))
    return (time.perf_counter() - start) / len(paths)


def time_frozen(model: PlaceModel, paths: list[Path], batch_size: int):
    """Frozen-stage features of ``paths`` and the seconds per image they took."""
    start = time.perf_counter()
    frozen = compute_frozen(model, paths, DistInfo(), batch_size)
    return frozen, (time.perf_counter() - start) / len(paths)


def tuple_loss_before(encoder, model, tuples: MinedTuples, query_paths, db_paths, margin: float, scale: float,
                      device, frozen=None) -> torch.Tensor:
    """The training step's loss as it was before issue 20 (every tuple's images encoded, shared ones again)."""
    paths, slots = [], []
    for q, p, negs in zip(tuples.queries, tuples.positives, tuples.negatives, strict=True):
        negs = negs[negs >= 0]
        slots.append((len(paths), len(negs)))
        paths += [query_paths[q], db_paths[p], *(db_paths[n] for n in negs)]
    groups, order = load_group(paths, model, device, frozen)
    encoded = encoder(groups)
    descriptors = torch.empty_like(encoded)
    descriptors[torch.as_tensor(order, device=device)] = encoded
    width = tuples.negatives.shape[1]
    index = torch.zeros(len(slots), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(slots), width, dtype=torch.bool, device=device)
    for row, (start, count) in enumerate(slots):
        index[row, :count] = torch.arange(start + 2, start + 2 + count)
        mask[row, :count] = True
    starts = torch.as_tensor([s for s, _ in slots], device=device)
    losses = triplet_ranking_loss(descriptors[starts], descriptors[starts + 1].unsqueeze(1), descriptors[index],
                                  margin, mask)
    return losses.sum() * scale


def mined_tuples(model: PlaceModel, dataset, config: TrainConfig, count: int, places: int, frozen) -> MinedTuples:
    """``count`` tuples mined as training mines them, among the first ``places`` places (hard negatives overlap)."""
    db = extract(model, dataset.database.paths()[:places], ExtractOptions(batch_size=config.batch_size, frozen=frozen))
    q = extract(model, dataset.queries.paths()[:places], ExtractOptions(batch_size=config.batch_size, frozen=frozen))
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(places, count, replace=False))
    positives = [np.array([i]) for i in chosen]
    non_negatives = [np.arange(max(0, i - 1), min(places, i + 2)) for i in chosen]
    tuples, _ = mine(db, q[chosen], np.arange(places), positives=positives, non_negatives=non_negatives,
                     previous=np.full((count, config.num_negatives), -1), rng=rng, num_database=places,
                     margin=config.margin, num_samples=min(config.negative_samples, places - 3),
                     num_negatives=config.num_negatives)
    return dataclasses.replace(tuples, queries=chosen[tuples.queries])


def time_steps(model: PlaceModel, dataset, config: TrainConfig, tuples: MinedTuples, frozen,
               variants: dict[str, dict]) -> dict[str, dict]:
    """Per variant: median seconds per training query (forward + backward + SGD step) and the weights after.

    The variants train copies of ``model`` on the same tuples, their steps interleaved (same machine load).
    """
    b = config.batch_tuples
    q_paths, db_paths, cpu = dataset.queries.paths(), dataset.database.paths(), torch.device("cpu")
    live = {}
    for name, options in variants.items():
        copy = deepcopy(model)
        frozen_batchnorm_train(copy)
        if options["channels_last"]:
            use_channels_last(copy)
        optimizer = torch.optim.SGD([p for p in copy.parameters() if p.requires_grad], lr=config.lr, momentum=0.9)
        live[name] = (copy, GroupEncoder(copy, frozen, options["channels_last"]), optimizer, [])
    for step in range(len(tuples) // b):
        batch = tuples.take(slice(step * b, (step + 1) * b))
        for name, (copy, encoder, optimizer, times) in live.items():
            start = time.perf_counter()
            optimizer.zero_grad()
            if variants[name]["before"]:
                loss = tuple_loss_before(encoder, copy, batch, q_paths, db_paths, config.margin, 1.0 / b, cpu, frozen)
            else:
                loss = tuple_loss(encoder, copy, batch, q_paths, db_paths, config.margin, cpu, frozen)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
    return {name: {"per_query": float(np.median(times[1:] if len(times) > 1 else times)) / b,
                   "weights": {k: v.detach().clone() for k, v in copy.state_dict().items()}}
            for name, (copy, _, _, times) in live.items()}


def weight_difference(a: dict, b: dict) -> float:
    """Largest absolute difference between two state dicts (0.0: bit-identical)."""
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def time_mining(database_size: int, refresh: int, dim: int) -> float:
    """Seconds of distance computation + mining for one refresh (random float16 descriptors)."""
    rng = np.random.default_rng(0)
    db = rng.standard_normal((database_size, dim)).astype(np.float16)
    q = rng.standard_normal((refresh, dim)).astype(np.float16)
    start = time.perf_counter()
    positives = [np.array([i % database_size]) for i in range(refresh)]
    mine(db, q, np.arange(database_size), positives=positives, non_negatives=positives,
         previous=np.full((refresh, 10), -1), rng=rng, num_database=database_size)
    return time.perf_counter() - start


VARIANTS = {"before": {"before": True, "channels_last": False},  # today's code before issue 20
            "now": {"before": False, "channels_last": False},  # distinct images encoded once (default)
            "now + channels_last": {"before": False, "channels_last": True}}  # --channels-last


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--dataset", type=Path, default=NORDLAND)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--train-from", type=int, default=None, help="first trained stage (0: all)")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 256))
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--no-pretrained", action="store_true")
    parser.add_argument("--database-size", type=int, default=2000, help="training database images")
    parser.add_argument("--refresh", type=int, default=1000, help="queries between cache refreshes")
    parser.add_argument("--images", type=int, default=96, help="images timed for extraction")
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps timed per variant")
    parser.add_argument("--places", type=int, default=200, help="places the timed tuples are mined among")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--full-backbone", action="store_true", help="no frozen-feature precomputation")
    add_results_option(parser)


def run(args: argparse.Namespace) -> None:
    """Run the benchmark with the parsed options."""
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = open_dataset(args.dataset, database="summer", queries="winter")
    config = TrainConfig(backbone=args.backbone, train_from=args.train_from, num_clusters=args.clusters,
                         resize="fixed", size=tuple(args.size), pretrained=not args.no_pretrained)
    torch.manual_seed(0)
    model = PlaceModel(config.model_config, pretrained=config.pretrained)
    frozen, per_frozen = None, 0.0
    if not args.full_backbone:
        subset = [p for side in (dataset.database, dataset.queries) for p in side.paths()[: args.places]]
        frozen, per_frozen = time_frozen(model, subset, config.batch_size)
    per_image = {"NCHW": time_extraction(model, dataset.database.paths()[: args.images], config.batch_size, frozen)}
    per_image["NHWC"] = time_extraction(use_channels_last(deepcopy(model)), dataset.database.paths()[: args.images],
                                        config.batch_size, frozen)
    tuples = mined_tuples(model, dataset, config, args.steps * config.batch_tuples, args.places, frozen)
    steps = time_steps(model, dataset, config, tuples, frozen, VARIANTS)
    mining = time_mining(args.database_size, args.refresh, model.output_dim)
    refreshes = 1000 / args.refresh
    images = sum(len(t) for t in (tuples.queries, tuples.positives)) + int((tuples.negatives >= 0).sum())
    distinct = len({("q", q) for q in tuples.queries} | {("d", int(d)) for d in tuples.positives}
                   | {("d", int(d)) for d in tuples.negatives.ravel() if d >= 0})
    print(f"{args.dataset.name} {args.size[0]}x{args.size[1]}, {args.backbone} + NetVLAD K={args.clusters} "
          f"({model.output_dim}-D), {torch.get_num_threads()} threads; timed tuples: {images} images, "
          f"{distinct} distinct")
    if frozen is not None:
        print(f"  frozen features   {per_frozen * 1000:8.1f} ms/image   (once per image per run, not counted below)")
    print(f"  mining            {mining:8.2f} s/refresh")
    base = None
    for name, result in steps.items():
        layout = "NHWC" if VARIANTS[name]["channels_last"] else "NCHW"
        cache = refreshes * (args.database_size + args.refresh) * per_image[layout]
        total = cache + refreshes * mining + 1000 * result["per_query"]
        base = base or total
        same = weight_difference(steps["before"]["weights"], result["weights"])
        print(f"  {name:20s} step {result['per_query'] * 1000:7.1f} ms/query, cache {per_image[layout] * 1000:5.1f} "
              f"ms/image -> {total:7.1f} s per 1000 queries ({total / base:.2f}x); weights vs before: "
              + ("bit-identical" if same == 0 else f"max |diff| {same:.1e}"))
