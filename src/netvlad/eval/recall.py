"""Recall@N: a query counts as correct if any of its top-N retrieved items is a positive.

The scores are pure functions over arrays (:func:`recall_at_n`, :func:`recall_by_condition`); a model is evaluated on
a GeoDataset by extracting, indexing, searching and scoring (:func:`evaluate`, :func:`evaluate_descriptors`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from netvlad.constants import EVAL_RADIUS_M
from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.errors import BadInputError
from netvlad.extract.descriptors import extract_to_store, iter_descriptors, raise_decode_error
from netvlad.extract.engine import LIBRARY_ENGINE, Engine
from netvlad.models import PlaceModel
from netvlad.search.exact import exact_search
from netvlad.search.index import EXACT, IndexConfig, build_index, search_rows
from netvlad.search.panorama import first_per_group


def recall_at_n(ranked: np.ndarray, positives: Sequence[np.ndarray], ns: Sequence[int] = (1, 5, 10, 20)
                ) -> dict[int, float]:
    """Percent of queries with a positive in their top-N, for each N in ``ns``.

    ``ranked``: ``(Q, k)`` database indices per query, best first (k ≥ max(ns), or fewer if the
    database is smaller); ``positives``: per query, the database indices counted as correct.
    Queries with no positive at all count as failures (they are reported, not dropped).

    Examples:
        >>> ranked = np.array([[3, 0], [1, 2], [0, 1]])  # three queries, their top-2 database ids
        >>> positives = [np.array([0]), np.array([2]), np.array([3])]
        >>> recall_at_n(ranked, positives, ns=(1, 2))  # query 2's positive was not retrieved
        {1: 0.0, 2: 66.66666666666667}
    """
    ranked = np.asarray(ranked)
    if len(ranked) != len(positives):
        raise ValueError(f"{len(ranked)} ranked lists but {len(positives)} positive lists")
    hits = np.zeros(ranked.shape, dtype=bool)
    for q, pos in enumerate(positives):
        hits[q] = np.isin(ranked[q], pos)
    first_hit = np.where(hits.any(1), hits.argmax(1), np.iinfo(np.int64).max)
    total = max(len(ranked), 1)
    return {int(n): 100.0 * float((first_hit < n).sum()) / total for n in ns}


def recall_by_condition(ranked: np.ndarray, positives: Sequence[np.ndarray], conditions: Sequence[str],
                        ns: Sequence[int] = (1, 5, 10, 20)) -> dict[str, dict]:
    """Recall@N per capture condition: ``{condition: {"num_queries": n, "recall": {N: percent}}}``.

    ``conditions``: one label per query (``ranked`` row), e.g. ``"day"``/``"night"``; conditions are listed in
    order of first appearance. Each condition's recall is over its own queries only.
    """
    if len(conditions) != len(ranked):
        raise ValueError(f"{len(conditions)} condition labels for {len(ranked)} queries")
    labels = np.asarray(conditions, dtype=object)
    out: dict[str, dict] = {}
    for label in dict.fromkeys(labels.tolist()):
        rows = np.flatnonzero(labels == label)
        out[str(label)] = {"num_queries": int(len(rows)),
                           "recall": recall_at_n(np.asarray(ranked)[rows], [positives[i] for i in rows], ns)}
    return out


logger = logging.getLogger(__name__)

DEFAULT_NS = (1, 5, 10, 20)


@dataclass
class EvalResult:
    """Retrieval results for Q queries against N database images.

    ``ranked`` ``(Q, k)`` database indices best first (−1 where a query had no descriptor),
    ``distances`` ``(Q, k)`` descriptor L2 distances, ``correct`` ``(Q, k)`` whether each retrieved
    image is a positive, ``recall`` {N: percent}.

    Examples:
        >>> database = np.eye(4, dtype=np.float32)
        >>> queries = np.array([[0.9, 0.1, 0, 0], [0, 0, 0.2, 0.8]], dtype=np.float32)
        >>> result = evaluate_descriptors(database, queries, [np.array([0]), np.array([2])], ns=(1, 2))
        >>> print(result.table())
            R@1     R@2
          50.00  100.00
        >>> result.correct
        array([[ True, False],
               [False,  True]])
        >>> result.summary()["recall"]
        {'1': 50.0, '2': 100.0}
    """

    recall: dict[int, float]
    ranked: np.ndarray
    distances: np.ndarray
    correct: np.ndarray
    positives: list[np.ndarray]
    descriptor_dim: int
    num_queries: int
    num_database: int
    skipped: list[str] = field(default_factory=list)

    def summary(self, model: str = "") -> dict:
        """The JSON report: recall (keys are strings of N, values percent), counts, dim, model."""
        return {"recall": {str(n): round(r, 4) for n, r in self.recall.items()}, "num_queries": self.num_queries,
                "num_database": self.num_database, "descriptor_dim": self.descriptor_dim, "model": model,
                "queries_without_positive": int(sum(len(p) == 0 for p in self.positives)),
                "skipped_images": list(self.skipped)}

    def table(self) -> str:
        """A two-line text table of Recall@N."""
        head = " ".join(f"{'R@' + str(n):>7}" for n in self.recall)
        vals = " ".join(f"{r:7.2f}" for r in self.recall.values())
        return f"{head}\n{vals}"


def evaluate_descriptors(db: np.ndarray, queries: np.ndarray, positives: Sequence[np.ndarray],
                         ns: Sequence[int] = DEFAULT_NS, index_config: IndexConfig = EXACT,
                         db_valid: np.ndarray | None = None, query_valid: np.ndarray | None = None,
                         k: int | None = None, groups: np.ndarray | None = None,
                         max_memory: float | None = None) -> EvalResult:
    """Recall@N of precomputed descriptors ``db`` ``(N, dim)`` and ``queries`` ``(Q, dim)``.

    ``db`` may be a float16/float32 ``numpy.memmap``: exact search streams it in chunks sized by ``max_memory``
    bytes (default: half the available memory), so it is never copied whole. ``positives``: per query, database
    indices counted as correct. ``db_valid``/``query_valid`` masks drop rows without a descriptor (undecodable
    images): such queries count as failures. ``groups`` ``(N,)``: a panorama id per database image; only the
    first-ranked image of each panorama is kept (Tokyo 24/7's official scoring), so Recall@N counts N distinct
    panoramas.

    Shape:
        - db: ``(N, dim)``; queries: ``(Q, dim)``; positives: Q arrays of database ids
        - output: an :class:`EvalResult` with ``ranked``, ``distances`` and ``correct`` ``(Q, k)``

    Examples:
        >>> database = np.eye(4, dtype=np.float32)
        >>> queries = np.array([[0.9, 0.1, 0, 0], [0, 0, 0.2, 0.8]], dtype=np.float32)
        >>> positives = [np.array([0]), np.array([2])]  # query 1 looks most like image 3, but was taken at 2
        >>> result = evaluate_descriptors(database, queries, positives, ns=(1, 2))
        >>> result.recall, result.ranked
        ({1: 50.0, 2: 100.0}, array([[0, 1],
               [3, 2]]))
        >>> evaluate_descriptors(database, queries, positives, ns=(1,), groups=np.array([0, 1, 1, 1])).ranked
        array([[0],
               [3]])
    """
    if db.ndim != 2 or queries.ndim != 2 or db.shape[1] != queries.shape[1]:
        raise ValueError(f"database descriptors {db.shape} and query descriptors {queries.shape} must be "
                         "(N, dim) and (Q, dim) with the same dim")
    if len(positives) != len(queries):
        raise ValueError(f"{len(queries)} queries but {len(positives)} positive lists")
    db_valid = np.asarray(db_valid, dtype=bool) if db_valid is not None else None
    q_rows = np.flatnonzero(query_valid) if query_valid is not None else np.arange(len(queries))
    num_db = int(db_valid.sum()) if db_valid is not None else len(db)
    k = min(k or max(ns), num_db)
    ranked = np.full((len(queries), k), -1, dtype=np.int64)
    distances = np.full((len(queries), k), np.inf, dtype=np.float32)
    if len(q_rows) and k:
        q = np.asarray(queries[q_rows], dtype=np.float32)
        wide = k if groups is None else min(k * int(np.bincount(np.unique(groups, return_inverse=True)[1]).max()),
                                            num_db)  # retrieve more, then one per panorama
        if index_config.kind == "flat":
            dist, found = exact_search(db, q, wide, valid=db_valid, max_memory=max_memory)
        else:
            index = build_index(db, index_config, valid=db_valid, max_memory=max_memory)
            rows = np.flatnonzero(db_valid) if db_valid is not None else None
            dist, found = search_rows(index, q, wide, index_config, db, rows)
        if groups is not None:
            found, dist = first_per_group(found, dist, groups, k)
        ranked[q_rows], distances[q_rows] = found, dist
    correct = np.zeros(ranked.shape, dtype=bool)
    for q, pos in enumerate(positives):
        correct[q] = np.isin(ranked[q], pos) & (ranked[q] >= 0)
    return EvalResult(recall=recall_at_n(ranked, positives, ns), ranked=ranked, distances=distances,
                      correct=correct, positives=list(positives), descriptor_dim=int(db.shape[1]),
                      num_queries=len(queries), num_database=len(db))


def describe(model: PlaceModel, images: ImageList, store_dir: Path | None, *, dtype: str = "float32",
             skip_bad: bool = False, batch_size: int = 8, workers: int = 0, device: torch.device | str = "cpu",
             progress: bool = False, desc: str = "extract", engine: Engine = LIBRARY_ENGINE
             ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Descriptors of an ImageList: -> (``(N, dim)``, valid mask ``(N,)``, names skipped as undecodable).

    With ``store_dir`` they go to (and are resumed from) a :class:`DescriptorStore` there and come back as its
    read-only memory map (float32 or float16, never loaded whole); without it, as a float32 array. ``engine``:
    torch, onnxruntime or auto (:func:`netvlad.extract.engine.make_runner`).
    """
    if store_dir is not None:
        store = extract_to_store(model, images.root, images.names, store_dir, dtype=dtype, skip_bad=skip_bad,
                                 batch_size=batch_size, workers=workers, device=device, progress=progress, desc=desc,
                                 engine=engine)
        store.require_complete()
        return store.descriptors, store.valid(), store.bad()
    out = np.zeros((len(images), model.output_dim), dtype=np.float32)
    valid = np.zeros(len(images), dtype=bool)
    skipped = []
    paths = images.paths()
    for indices, descriptors, bad in iter_descriptors(model, paths, batch_size, workers, device, progress, desc,
                                                      engine=engine):
        if bad and not skip_bad:
            raise_decode_error(paths[bad[0]], "")
        skipped += [images.names[i] for i in bad]
        if descriptors is not None:
            out[indices], valid[indices] = descriptors, True
    for name in skipped:
        logger.warning("skipped undecodable image %s", images.root / name)
    return out, valid, skipped


def evaluate(model: PlaceModel, dataset: GeoDataset, *, radius: float = EVAL_RADIUS_M, ns: Sequence[int] = DEFAULT_NS,
             batch_size: int = 8, workers: int = 0, device: torch.device | str = "cpu", progress: bool = False,
             store_dir: Path | str | None = None, skip_bad: bool = False, dtype: str = "float32",
             index_config: IndexConfig = EXACT, k: int | None = None, max_memory: float | None = None,
             engine: Engine = LIBRARY_ENGINE) -> EvalResult:
    """Recall@N (percent) of ``model`` on ``dataset``: positives within ``radius`` metres (or ±frames).

    With ``store_dir``, descriptors are kept in ``store_dir/database`` and ``store_dir/queries``
    and a rerun continues an interrupted extraction; ``max_memory`` (bytes) bounds the search's working memory.
    A NetVLAD model with random centroids (not loaded, not clustered) is first clustered on the database images,
    as ``netvlad evaluate`` does (:func:`netvlad.extract.clusters.cluster_if_off_the_shelf`).

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> from netvlad.models import ModelConfig
        >>> model = PlaceModel(ModelConfig(pool="gem", preprocessing={"resize": "none"})).eval()  # ImageNet weights
        >>> result = evaluate(model, city, ns=(1, 5, 10))  # dusk, night, winter... queries against a day database
        >>> result.num_queries, result.num_database, result.recall[1] <= result.recall[5] <= result.recall[10]
        (10, 20, True)
    """
    from netvlad.extract.clusters import cluster_if_off_the_shelf  # here: train imports eval at module level

    cluster_if_off_the_shelf(model, dataset.database.paths(), device=device, progress=progress,
                             batch_size=batch_size, workers=workers, skip_bad=skip_bad)
    store_dir = Path(store_dir) if store_dir is not None else None
    common = dict(dtype=dtype, skip_bad=skip_bad, batch_size=batch_size, workers=workers, device=device,
                  progress=progress, engine=engine)
    db, db_valid, db_bad = describe(model, dataset.database, store_dir and store_dir / "database",
                                    desc="database", **common)
    q, q_valid, q_bad = describe(model, dataset.queries, store_dir and store_dir / "queries", desc="queries",
                                 **common)
    for images, valid, what in ((dataset.database, db_valid, "database"), (dataset.queries, q_valid, "query")):
        if len(valid) and not valid.any():
            raise BadInputError(f"{images.root}: none of the {len(valid)} {what} images could be decoded (all "
                                "skipped); nothing to evaluate", path=images.root)
    groups = dataset.database.panoramas
    result = evaluate_descriptors(db, q, dataset.positives(radius), ns, index_config, db_valid, q_valid, k,
                                  groups=groups, max_memory=max_memory)
    result.skipped = db_bad + q_bad
    logger.info("%r Recall@N: %s", dataset, {n: round(r, 2) for n, r in result.recall.items()})
    return result
