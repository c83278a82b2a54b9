"""Ground truth at Pittsburgh-250k scale: 250,000 database and 24,000 query positions, generated.

Database images come 24 per panorama (2 pitches × 12 yaws, as in Pittsburgh 250k), panoramas every ~12 m along
a 13 × 13 street grid over 5 × 5 km; queries stand anywhere on the streets with ±5 m GPS noise. Times the three
ground truths a run needs: evaluation positives (25 m), training potential positives (10 m, non-trivial) and
non-negatives (25 m), with a KD-tree (scipy cKDTree, all cores). Target: under 10 s in total.

    python benchmarks/groundtruth.py [--database 250000] [--queries 24000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import scipy

from netvlad.data import GeoDataset, ImageList

PER_PANORAMA = 24


def street_points(rng: np.random.Generator, count: int, extent: float = 5000.0, streets: int = 13) -> np.ndarray:
    """``count`` points (N, 2) metres uniformly along a grid of ``streets`` × ``streets`` straight streets."""
    along = rng.uniform(0, extent, count)
    offset = rng.integers(0, streets, count) * extent / (streets - 1)
    vertical = rng.random(count) < 0.5
    return np.where(vertical[:, None], np.stack([offset, along], 1), np.stack([along, offset], 1))


def generate(num_database: int, num_queries: int, seed: int = 0) -> GeoDataset:
    """A GeoDataset of generated positions (no images) with Pittsburgh-250k-like density."""
    rng = np.random.default_rng(seed)
    panoramas = street_points(rng, -(-num_database // PER_PANORAMA))
    db = np.repeat(panoramas, PER_PANORAMA, axis=0)[:num_database]
    q = street_points(rng, num_queries) + rng.normal(0, 5.0, (num_queries, 2))
    pano_ids = np.repeat(np.arange(len(panoramas)), PER_PANORAMA)[:num_database].astype(np.float64)
    database = ImageList("/db", [f"{i}.jpg" for i in range(num_database)], db, times=pano_ids)
    queries = ImageList("/q", [f"q{i}.jpg" for i in range(num_queries)], q)
    return GeoDataset("generated-250k", database, queries)


def timed(fn, repeats: int) -> tuple[float, list[np.ndarray]]:
    """Best wall time in seconds over ``repeats`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=int, default=250_000)
    parser.add_argument("--queries", type=int, default=24_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = generate(args.database, args.queries)
    print(f"ground truth for {args.database:,} database / {args.queries:,} query positions; scipy "
          f"{scipy.__version__}, {os.cpu_count()} CPUs, best of {args.repeats}")
    total = 0.0
    for label, fn in (("positives 25 m", lambda: data.positives(25.0)),
                      ("training positives 10 m", lambda: data.training_positives(10.0)),
                      ("non-negatives 25 m", lambda: data.non_negatives(25.0))):
        seconds, result = timed(fn, args.repeats)
        total += seconds
        counts = np.array([len(r) for r in result])
        print(f"{label:<24} {seconds:7.2f} s   mean {counts.mean():6.1f} per query, {np.mean(counts == 0):5.1%} none")
    print(f"{'total':<24} {total:7.2f} s   (target < 10 s)")


if __name__ == "__main__":
    main()
