"""Recall@N after spatial re-ranking, beside the ranking it re-ranked (the global one, or a sequence ranking): the
evaluation's shortlist re-ranked per query."""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from netvlad.data.dataset import GeoDataset
from netvlad.eval.recall import recall_at_n
from netvlad.extract.engine import LIBRARY_ENGINE, Engine
from netvlad.extract.store import DescriptorStore
from netvlad.files import atomic_write
from netvlad.match.verify.panoramas import one_per_panorama, panorama_groups
from netvlad.match.verify.patches import PatchExtractor
from netvlad.match.verify.presets import TOP, VerifyPreset
from netvlad.match.verify.run import (
    VerifiedRanking,
    clamp_top,
    extract_with_patches,
    patch_extractor,
    verify_folders,
)
from netvlad.models import PlaceModel
from netvlad.search.exact import exact_search

logger = logging.getLogger(__name__)


@dataclass
class VerifiedEval:
    """Recall@N {N: percent} of one dataset before (``global_recall``, of the ranking ``base``: ``"global"`` or a
    sequence ranking's label) and after re-ranking (``recall``), with the re-ranking itself.

    Examples:
        >>> from netvlad.match.verify import VerifiedRanking, get_preset
        >>> ranking = VerifiedRanking(np.array([[1, 0], [2, 0]]), np.zeros((2, 2)), skipped=0,
        ...                           seconds=np.array([0.02, 0.04]), bytes_per_image=3140)  # two queries re-ranked
        >>> result = VerifiedEval(get_preset("speed"), 2, recall={1: 100.0}, global_recall={1: 50.0},
        ...                       ranking=ranking, global_ranked=np.array([[0, 1], [2, 0]]))  # as evaluate_verified
        >>> print(result.table())
                                  R@1
                        global  50.00
                 speed (top 2) 100.00
        >>> result.summary()["verify"]["rerank_seconds_per_query"]  # seconds, mean over the queries
        0.03
    """

    preset: VerifyPreset
    top: int
    recall: dict[int, float]
    global_recall: dict[int, float]
    ranking: VerifiedRanking
    global_ranked: np.ndarray
    base: str = "global"

    def summary(self) -> dict:
        """The JSON keys: ``verified_recall`` and ``verify`` (ranking re-ranked, preset, top, skipped sizes, timing,
        store bytes)."""
        seconds = self.ranking.seconds
        return {"verified_recall": {str(n): round(r, 4) for n, r in self.recall.items()},
                "verify": {"ranking": self.base, "ranking_recall": {str(n): round(r, 4)
                                                                     for n, r in self.global_recall.items()},
                           "preset": self.preset.to_dict(), "top": self.top, "skipped_sizes": self.ranking.skipped,
                           "rerank_seconds_per_query": round(float(seconds.mean()) if len(seconds) else 0.0, 5),
                           "store_bytes_per_image": self.ranking.bytes_per_image}}

    def table(self) -> str:
        """Recall@N of the global ranking and after re-ranking, one line each."""
        after = f"{self.preset.name} (top {self.top})" if self.base == "global" else \
            f"{self.base} + {self.preset.name} (top {self.top})"
        width = max(22, len(after))
        head = f"{'':>{width}}" + " ".join(f"{'R@' + str(n):>7}" for n in self.recall)
        rows = [(self.base, self.global_recall), (after, self.recall)]
        return "\n".join([head] + [f"{label:>{width}}" + " ".join(f"{r:7.2f}" for r in rec.values())
                                   for label, rec in rows])


def global_shortlist(store_dir: Path, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's global top-``top`` from the evaluation's descriptor stores: (rows, distances) ``(Q, top)``."""
    database = DescriptorStore.open(store_dir / "database")
    queries = DescriptorStore.open(store_dir / "queries")
    q_valid = queries.valid()
    ranked = np.full((len(queries), top), -1, dtype=np.int64)
    distances = np.full((len(queries), top), np.inf, dtype=np.float32)
    if q_valid.any():
        dist, found = exact_search(database.descriptors, np.asarray(queries.descriptors[q_valid], np.float32), top,
                                   valid=database.valid())
        ranked[q_valid, :found.shape[1]], distances[q_valid, :found.shape[1]] = found, dist
    return ranked, distances


def evaluate_verified(extractor: PatchExtractor, dataset: GeoDataset, positives: Sequence[np.ndarray],
                      store_dir: Path | str, top: int = TOP, ns: Sequence[int] = (1, 5, 10, 20),
                      device: torch.device | str = "cpu") -> VerifiedEval:
    """Re-rank each query's global top-``top`` (descriptors already in ``store_dir``) with ``extractor``'s patches
    (:func:`~netvlad.match.verify.run.patch_extractor`'s, or :func:`extract_for_verify`'s) and score both rankings.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.eval import evaluate
        >>> from netvlad.models import ModelConfig
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> before = evaluate(model, city, ns=(1, 5), store_dir="store")  # clusters, extracts into store/, scores
        >>> toy = VerifyPreset("toy", "1 × 1 patches, 16-D", sizes=(1,), dim=16, scorer="rapid")
        >>> extractor = patch_extractor(model, toy, city.database.paths())  # the patch whitening fitted once
        >>> verified = evaluate_verified(extractor, city, city.positives(), "store", top=5, ns=(1, 5))
        >>> verified.global_recall == before.recall  # the same global ranking, before re-ranking
        True
        >>> verified.recall[5] == verified.global_recall[5]  # re-ranking inside the top 5 moves hits, never adds one
        True
        >>> sorted(verified.summary())  # the keys it adds to the JSON report
        ['verified_recall', 'verify']
    """
    top = clamp_top(top, len(dataset.database))
    ranked, distances = global_shortlist(Path(store_dir), top)
    return verify_given(extractor, dataset, positives, store_dir, ranked, distances, ns, device,
                        groups=panorama_groups(dataset))


def verify_evaluation(extractor: PatchExtractor, dataset: GeoDataset, positives: Sequence[np.ndarray],
                      store_dir: Path | str, top: int = TOP, ns: Sequence[int] = (1, 5, 10, 20),
                      device: torch.device | str = "cpu", sequence=None) -> VerifiedEval:
    """Re-rank an evaluation's shortlist with ``extractor``'s patches: each query's global top-``top``, or with
    ``sequence`` (a :class:`~netvlad.eval.sequence.SequenceResult`) its sequence ranking's, and score both
    rankings."""
    if sequence is None:
        return evaluate_verified(extractor, dataset, positives, store_dir, top, ns, device)
    from netvlad.eval.verified_sequence import verify_sequence

    return verify_sequence(extractor, dataset, positives, sequence, store_dir, top, ns, device)


def verify_given(extractor: PatchExtractor, dataset: GeoDataset, positives: Sequence[np.ndarray],
                 store_dir: Path | str, ranked: np.ndarray, distances: np.ndarray,
                 ns: Sequence[int] = (1, 5, 10, 20), device: torch.device | str = "cpu", base: str = "global",
                 groups: np.ndarray | None = None) -> VerifiedEval:
    """Re-rank a given ranking ``ranked`` ``(Q, top)`` (``distances``: its scores, lower is better, fused with the
    patch score as the global distances are) with ``extractor``'s patches (model, preset and patch whitening for
    this database) and score it before and after; database patches in ``store_dir``.

    ``groups`` ``(N,)`` panorama ids: the top images are re-ranked, then both rankings keep only the first-ranked
    image of each panorama before Recall@N (Tokyo 24/7's scoring), so the padded tail counts as misses.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.models import ModelConfig
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> toy = VerifyPreset("toy", "1 × 1 patches, 16-D", sizes=(1,), dim=16, scorer="rapid")
        >>> ranked = np.tile(np.arange(5), (10, 1))  # a ranking of one's own: database rows 0-4 for every query
        >>> distances = np.tile(np.linspace(0.5, 0.9, 5), (10, 1))  # its scores, lower is better
        >>> extractor = patch_extractor(model, toy, city.database.paths())
        >>> verified = verify_given(extractor, city, city.positives(), "given", ranked, distances, ns=(1, 5),
        ...                         base="rows 0-4")
        >>> verified.base, all(set(row) == set(range(5)) for row in verified.ranking.ranked)  # re-ordered only
        ('rows 0-4', True)
        >>> verified.recall[5] == verified.global_recall[5]  # re-ranking inside the top 5 never adds a hit
        True
    """
    top, preset = ranked.shape[1], extractor.preset
    ranking = verify_folders(extractor, dataset.database.root, dataset.database.names, dataset.queries.paths(),
                             ranked, distances, top, Path(store_dir) / "patches", device,
                             query_folder=query_patch_folder(store_dir, preset))
    if groups is not None:
        after, scores = one_per_panorama(ranking.ranked, ranking.scores, groups)
        ranking = dataclasses.replace(ranking, ranked=after, scores=scores)
        ranked, _ = one_per_panorama(ranked, np.asarray(distances, dtype=np.float32), groups)
    ns = [n for n in ns if n <= top] or [top]
    recall, before = recall_at_n(ranking.ranked, positives, ns), recall_at_n(ranked, positives, ns)
    if ranking.skipped:
        logger.warning("%d (image, patch size) pairs had no windows (image smaller than the patch) and were skipped",
                       ranking.skipped)
    return VerifiedEval(preset, top, recall, before, ranking, ranked, base)


def query_patch_folder(store_dir: Path | str, preset: VerifyPreset) -> Path:
    """Where :func:`extract_for_verify` keeps the queries' patches (float32): ``store_dir/patches/<preset>-queries``."""
    return Path(store_dir) / "patches" / f"{preset.name}-queries"


def extract_for_verify(model: PlaceModel, dataset: GeoDataset, preset: VerifyPreset, store_dir: Path | str,
                       cache: Path | bool = True, dtype: str = "float32", batch_size: int = 8,
                       engine: Engine = LIBRARY_ENGINE) -> PatchExtractor:
    """On a CPU, before an evaluation that re-ranks: the database's and the queries' global descriptors
    (``store_dir/database``, ``store_dir/queries``, as the evaluation keeps them) and patches (``store_dir/patches``)
    from one backbone pass per image of ``engine`` (the evaluation's;
    :func:`~netvlad.match.verify.run.extract_with_patches`), so that neither the
    descriptor extraction nor the re-ranking runs the backbone again -> the patch extractor
    (:func:`~netvlad.match.verify.run.patch_extractor`'s, ``cache`` as it takes it), for the re-ranking, which then
    neither fits nor reads the patch whitening again.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.eval import evaluate
        >>> from netvlad.extract.clusters import cluster_if_off_the_shelf
        >>> from netvlad.models import ModelConfig
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> _ = cluster_if_off_the_shelf(model, city.database.paths(), cache=False)  # k-means first, as evaluating
        >>> toy = VerifyPreset("toy", "1 × 1 patches, 16-D", sizes=(1,), dim=16, scorer="rapid")
        >>> extractor = extract_for_verify(model, city, toy, "one-pass", cache=False)  # descriptors, patches
        >>> before = evaluate(model, city, ns=(1, 5), store_dir="one-pass")  # finds its descriptors in the store
        >>> verified = evaluate_verified(extractor, city, city.positives(), "one-pass", top=5,
        ...                              ns=(1, 5))  # the patch whitening fitted once, above
        >>> sorted(p.name for p in Path("one-pass/patches").iterdir()), verified.global_recall == before.recall
        (['toy', 'toy-queries'], True)
    """
    extractor = patch_extractor(model, preset, dataset.database.paths(), cache)
    for images, label, folder, kept in ((dataset.database, "database", preset.name, "float16"),
                                        (dataset.queries, "queries", query_patch_folder(store_dir, preset).name,
                                         "float32")):  # a query's patches as computed, as without this pass
        extract_with_patches(extractor, images.root, images.names, Path(store_dir) / label,
                             Path(store_dir) / "patches" / folder, dtype, batch_size, kept, engine=engine)
    return extractor


def write_verified_csv(result: VerifiedEval, dataset: GeoDataset, positives: Sequence[np.ndarray], path: Path | str
                       ) -> Path:
    """One row per query: top-1 of the ranking re-ranked (``global_`` or ``sequence_`` columns), re-ranked top-1
    and top-5 names, whether each top-1 is correct."""
    names = dataset.database.names
    before_label = "global" if result.base == "global" else "sequence"

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["query", f"{before_label}_top1", "verified_top1", "verified_top5",
                             f"{before_label}_correct_at_1", "verified_correct_at_1", "rerank_seconds"])
            for q, name in enumerate(dataset.queries.names):
                before, after = result.global_ranked[q, 0], result.ranking.ranked[q, 0]
                top5 = " ".join(names[i] for i in result.ranking.ranked[q, :5] if i >= 0)
                writer.writerow([name, names[before] if before >= 0 else "", names[after] if after >= 0 else "",
                                 top5, int(before in positives[q]), int(after in positives[q]),
                                 f"{result.ranking.seconds[q]:.5f}"])

    return atomic_write(Path(path), write)
