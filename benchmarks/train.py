"""Training throughput: seconds per 1000 training queries, cache refreshes included (paper defaults).

    python benchmarks/train.py                      # Nordland thumbnails at 128×256 (the recipe's setting)
    python benchmarks/train.py --size 64 64 --clusters 4 --no-pretrained

Measures the costs separately on real images and combines them for a database of ``--database-size``:
a cache refresh every ``--refresh`` queries (database + those queries extracted) and one optimiser step per
``--batch-tuples`` tuples (query, positive, 10 negatives). By default the frozen stages' output is precomputed
(as training does; its one-off cost per image is printed apart); ``--full-backbone`` times the whole network.
Timing lives here, never in tests.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from netvlad.data import open_dataset
from netvlad.models import PlaceModel
from netvlad.train import TrainConfig
from netvlad.train.cache import ExtractOptions, extract
from netvlad.train.distributed import DistInfo
from netvlad.train.frozen import compute_frozen
from netvlad.train.mining import MinedTuples, mine
from netvlad.train.step import GroupEncoder, frozen_batchnorm_train, tuple_loss

NORDLAND = Path(__file__).resolve().parents[2] / "shared" / "data" / "nordland"


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


def time_steps(model: PlaceModel, dataset, config: TrainConfig, steps: int, frozen) -> float:
    """Seconds per training query (forward + backward + SGD step over its 12 images)."""
    rng = np.random.default_rng(0)
    b, j, limit = config.batch_tuples, config.num_negatives, 200  # images among the first 200 places
    queries = rng.choice(limit, steps * b, replace=False)
    negatives = np.stack([rng.choice(np.setdiff1d(np.arange(limit), [q]), j, replace=False) for q in queries])
    tuples = MinedTuples(queries, queries, negatives, 0)
    frozen_batchnorm_train(model)
    encoder = GroupEncoder(model, frozen)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=config.lr, momentum=0.9)
    q_paths, db_paths = dataset.queries.paths(), dataset.database.paths()
    times = []
    for step in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        tuple_loss(encoder, model, tuples.take(slice(step * b, (step + 1) * b)), q_paths, db_paths, config.margin,
                   1.0 / b, torch.device("cpu"), frozen).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:] if steps > 1 else times)) / b


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=NORDLAND)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 256))
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--no-pretrained", action="store_true")
    parser.add_argument("--database-size", type=int, default=2000, help="training database images")
    parser.add_argument("--refresh", type=int, default=1000, help="queries between cache refreshes")
    parser.add_argument("--images", type=int, default=96, help="images timed for extraction")
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps timed")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--full-backbone", action="store_true", help="no frozen-feature precomputation")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = open_dataset(args.dataset, database="summer", queries="winter")
    config = TrainConfig(num_clusters=args.clusters, resize="fixed", size=tuple(args.size),
                         pretrained=not args.no_pretrained)
    torch.manual_seed(0)
    model = PlaceModel(config.model_config, pretrained=config.pretrained)
    frozen, per_frozen = None, 0.0
    if not args.full_backbone:
        subset = [p for side in (dataset.database, dataset.queries) for p in side.paths()[:200]]
        frozen, per_frozen = time_frozen(model, subset, config.batch_size)
    per_image = time_extraction(model, dataset.database.paths()[: args.images], config.batch_size, frozen)
    per_query = time_steps(model, dataset, config, args.steps, frozen)
    mining = time_mining(args.database_size, args.refresh, model.output_dim)
    refreshes = 1000 / args.refresh
    cache = refreshes * (args.database_size + args.refresh) * per_image
    total = cache + refreshes * mining + 1000 * per_query
    print(f"{args.dataset.name} {args.size[0]}x{args.size[1]}, mobilenet_v2 + NetVLAD K={args.clusters} "
          f"({model.output_dim}-D), {torch.get_num_threads()} threads")
    if frozen is not None:
        print(f"  frozen features   {per_frozen * 1000:8.1f} ms/image   (once per image per run, not counted below)")
    print(f"  cache extraction  {per_image * 1000:8.1f} ms/image   -> {cache:7.1f} s per 1000 queries "
          f"(database {args.database_size} + queries, refresh every {args.refresh})")
    print(f"  mining            {mining:8.2f} s/refresh")
    print(f"  training step     {per_query * 1000:8.1f} ms/query   -> {1000 * per_query:7.1f} s per 1000 queries")
    print(f"  total             {total:8.1f} s per 1000 training queries")


if __name__ == "__main__":
    main()
