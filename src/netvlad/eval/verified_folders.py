"""Spatial re-ranking where rankings are made without ground truth: ``retrieve`` (two folders) and ``query`` (a
saved place index). Each re-ranks the global top ``top`` and keeps the first ``k``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from netvlad.errors import BadInputError
from netvlad.eval.folder_ranking import Ranking
from netvlad.match.verify.presets import VerifyPreset
from netvlad.match.verify.run import VerifiedRanking, patch_extractor, verify_folders
from netvlad.models import PlaceModel


def reorder(ranked: np.ndarray, distances: np.ndarray, verified: VerifiedRanking, k: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """The re-ranked top-``k`` rows ``(Q, k)`` with each row's global distance (no longer ascending)."""
    rows = verified.ranked[:, :k]
    lookup = [dict(zip(r.tolist(), d.tolist(), strict=True)) for r, d in zip(ranked, distances, strict=True)]
    dist = np.array([[lookup[q].get(int(r), np.inf) if r >= 0 else np.inf for r in row]
                     for q, row in enumerate(rows)], dtype=np.float32).reshape(rows.shape)
    return rows, dist


def verify_folder_ranking(model: PlaceModel, preset: VerifyPreset, ranking: Ranking, k: int, top: int,
                          store_dir: Path, device: torch.device | str = "cpu") -> tuple[Ranking, VerifiedRanking]:
    """Re-rank a :func:`netvlad.eval.folder_ranking.rank_folders` ranking (≥ ``top`` columns) to its top-``k``.

    Examples:
        >>> from netvlad.data import synthetic
        >>> from netvlad.eval.folder_ranking import rank_folders
        >>> from netvlad.models import ModelConfig
        >>> test = synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city") / "images" / "test"
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> ranking = rank_folders(model, test / "database", test / "queries", k=5)  # what `netvlad retrieve` ranks
        >>> toy = VerifyPreset("toy", "1 × 1 patches, 16-D", sizes=(1,), dim=16, scorer="rapid")
        >>> reranked, verified = verify_folder_ranking(model, toy, ranking, k=3, top=5, store_dir=Path("patches"))
        >>> reranked.ranked.shape, all(set(a) <= set(b) for a, b in zip(reranked.ranked, ranking.ranked))
        ((10, 3), True)
    """
    extractor = patch_extractor(model, preset, [ranking.base / n for n in ranking.database_names], device=device)
    verified = verify_folders(extractor, ranking.base, ranking.database_names,
                              [ranking.base / n for n in ranking.query_names], ranking.ranked, ranking.distances,
                              top, store_dir, device)
    rows, dist = reorder(ranking.ranked, ranking.distances, verified, k)
    return dataclasses.replace(ranking, ranked=rows, distances=dist), verified


def verify_index_search(index, query_paths: Sequence[Path], descriptors: np.ndarray, preset: VerifyPreset, top: int,
                        k: int, device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """A :class:`netvlad.places.localise.PlaceIndex` search re-ranked: -> (distances, store rows) ``(Q, k)``.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.extract import extract_descriptors
        >>> from netvlad.models import ModelConfig
        >>> from netvlad.places import PlaceIndex, build_place_index
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> _ = build_place_index(model, city.database, "index")  # what `netvlad index build` writes
        >>> index, queries = PlaceIndex.load("index"), city.queries.paths()
        >>> toy = VerifyPreset("toy", "1 × 1 patches, 16-D", sizes=(1,), dim=16, scorer="rapid")
        >>> distances, rows = verify_index_search(index, queries, extract_descriptors(index.model, queries), toy,
        ...                                       top=5, k=3)  # what `netvlad query --verify` returns
        >>> rows.shape, (Path("index") / "patches").is_dir()  # the database's patches kept in the index folder
        ((10, 3), True)
    """
    root = Path(index.meta.get("root") or "")
    if not root.is_dir():
        where = "" if root.is_absolute() else (" (a path recorded relative to the directory the index was built in: "
                                               "run from there, or rebuild the index)")
        raise BadInputError(f"{index.folder}: its database images ({root}) are not there{where}; spatial re-ranking "
                            "reads their patches once (into the index folder)", path=index.folder)
    distances, rows = index.search(descriptors, top)
    extractor = patch_extractor(index.model, preset, [root / n for n in index.store.names], device=device)
    verified = verify_folders(extractor, root, index.store.names, query_paths, rows, distances, top,
                              index.folder / "patches", device)
    rows, dist = reorder(rows, distances, verified, k)
    return dist, rows
