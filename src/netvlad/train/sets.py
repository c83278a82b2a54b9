"""Training and validation sets: GPS ground truth for mining, usable queries, a held-out validation split."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from netvlad.constants import NEGATIVE_RADIUS_M, POSITIVE_RADIUS_M
from netvlad.data.dataset import TRIVIAL_DISTANCE, GeoDataset, ImageList
from netvlad.train.ambiguous import ambiguous_images, grey_thumbnails

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """A dataset with its mining ground truth: per query, potential positives and non-negatives (database ids).

    Examples:
        >>> from netvlad.data import GeoDataset, ImageList
        >>> street = ImageList("street", [f"{i}.jpg" for i in range(6)], [[15.0 * i, 0.0] for i in range(6)])
        >>> walk = ImageList("walk", ["a.jpg", "b.jpg", "c.jpg"], [[3.0, 0.0], [45.0, 0.0], [500.0, 0.0]])
        >>> dataset = GeoDataset("toy", database=street, queries=walk)
        >>> training_set = prepare_training_set(dataset)
        >>> training_set.query_ids, training_set.positives[0], training_set.non_negatives[0]
        (array([0]), array([0]), array([0, 1]))
    """

    dataset: GeoDataset
    query_ids: np.ndarray  # queries with ≥ 1 potential positive and ≥ 1 definite negative
    positives: list[np.ndarray]  # per query: database ids within pos_radius metres
    non_negatives: list[np.ndarray]  # per query: database ids within neg_radius metres (never negatives)


def require_positions(images: ImageList, what: str, dataset: str) -> None:
    """A one-line error unless every image of ``images`` has a finite position."""
    missing = int((~np.isfinite(images.utm).all(1)).sum())
    if missing:
        raise ValueError(f"{dataset}: training needs a GPS/UTM position for every image, but {missing} of "
                         f"{len(images)} {what} images have none; use a dataset with positions")


def prepare_training_set(dataset: GeoDataset, pos_radius: float = POSITIVE_RADIUS_M,
                         neg_radius: float = NEGATIVE_RADIUS_M, min_positive_distance: float | None = None
                         ) -> TrainingSet:
    """Ground truth for mining; a clear error when there is no GPS or no query with a positive and a negative.

    Potential positives closer than ``min_positive_distance`` metres to the query are trivial (the query's own
    panorama) and never used: default 1 m as the official code, 0 for sequences (:data:`TRIVIAL_DISTANCE`).

    Examples:
        >>> from netvlad.data import GeoDataset, ImageList
        >>> street = ImageList("street", [f"{i}.jpg" for i in range(6)], [[15.0 * i, 0.0] for i in range(6)])
        >>> walk = ImageList("walk", ["a.jpg", "b.jpg", "c.jpg"], [[3.0, 0.0], [45.0, 0.0], [500.0, 0.0]])
        >>> dataset = GeoDataset("toy", database=street, queries=walk)
        >>> training_set = prepare_training_set(dataset)  # positives within 10 m, negatives beyond 25 m
        >>> training_set.query_ids  # b.jpg has no positive (15 m away), c.jpg no place within 25 m
        array([0])
        >>> training_set.non_negatives[1]  # 30, 45 and 60 m: never mined as negatives of b.jpg
        array([2, 3, 4])
    """
    require_positions(dataset.database, "database", dataset.name)
    require_positions(dataset.queries, "query", dataset.name)
    positives = dataset.training_positives(pos_radius, min_positive_distance)
    non_negatives = dataset.non_negatives(neg_radius)
    usable = [q for q in range(len(positives))
              if len(positives[q]) > 0 and len(non_negatives[q]) < len(dataset.database)]
    if not usable:
        raise ValueError(no_usable_query(dataset, pos_radius, neg_radius, min_positive_distance))
    logger.info("%s: %d of %d queries usable for training", dataset.name, len(usable), len(positives))
    return TrainingSet(dataset, np.asarray(usable, dtype=np.int64), positives, non_negatives)


def no_usable_query(dataset: GeoDataset, pos_radius: float, neg_radius: float,
                    min_positive_distance: float | None) -> str:
    """The error when no query is usable; names the trivial-positive rule when it is what removed the positives."""
    trivial = TRIVIAL_DISTANCE if min_positive_distance is None and not dataset.is_sequence else \
        (min_positive_distance or 0.0)
    message = (f"{dataset.name}: no query has both a potential positive (within {pos_radius:g} m) and a definite "
               f"negative (beyond {neg_radius:g} m); check the positions or the radii")
    if trivial > 0:
        within = dataset.training_positives(pos_radius, 0.0)
        dropped = sum(len(p) > 0 for p in within) - sum(len(p) > 0 for p in dataset.training_positives(
            pos_radius, trivial))
        message += (f". Database images closer than {trivial:g} m to a query count as trivial positives (the "
                    f"query's own capture, as in the official code) and are not used: {dropped} queries lost all "
                    f"their positives so; min_positive_distance (--min-positive-distance 0) keeps them")
    return message


def exclude_ambiguous(dataset: GeoDataset, neg_radius: float = NEGATIVE_RADIUS_M, dark_level: float | None = None,
                      correlation: float | None = None) -> GeoDataset:
    """``dataset`` without its ambiguous images (:mod:`netvlad.train.ambiguous`: mean grey below ``dark_level``, or
    pixel correlation above ``correlation`` with an image of the same side beyond ``neg_radius`` metres), each side
    judged on its own; the counts logged in one line. Both rules off (``None``): ``dataset`` itself."""
    if dark_level is None and correlation is None:
        return dataset
    verdicts = {side: ambiguous_images(grey_thumbnails(images.paths()), images.utm, neg_radius, dark_level,
                                       correlation)
                for side, images in (("database", dataset.database), ("query", dataset.queries))}
    counts = {side: {rule: int(v.sum()) for rule, v in rules.items()} for side, rules in verdicts.items()}
    logger.info("%s: excluded from training as ambiguous %d of %d database and %d of %d query images (dark, mean "
                "grey < %s: %d / %d; far duplicate, pixel correlation > %s with an image beyond %g m: %d / %d)",
                dataset.name, counts["database"]["ambiguous"], len(dataset.database), counts["query"]["ambiguous"],
                len(dataset.queries), dark_level, counts["database"]["dark"], counts["query"]["dark"], correlation,
                neg_radius, counts["database"]["far_duplicate"], counts["query"]["far_duplicate"])
    return dataset.subset(np.flatnonzero(~verdicts["query"]["ambiguous"]),
                          np.flatnonzero(~verdicts["database"]["ambiguous"]))


def holdout_last(dataset: GeoDataset, count: int) -> tuple[GeoDataset, GeoDataset]:
    """(train, val): the last ``count`` places (sequences: frames) of database and queries go to validation.

    Examples:
        >>> from netvlad.data import GeoDataset, ImageList
        >>> street = ImageList("street", [f"{i}.jpg" for i in range(6)], [[15.0 * i, 0.0] for i in range(6)])
        >>> walk = ImageList("walk", ["a.jpg", "b.jpg", "c.jpg"], [[3.0, 0.0], [45.0, 0.0], [500.0, 0.0]])
        >>> dataset = GeoDataset("toy", database=street, queries=walk)
        >>> holdout_last(dataset, 1)
        (< toy-train - #q: 2; #db: 5 >, < toy-val - #q: 1; #db: 1 >)
    """
    if dataset.is_sequence:
        return dataset.split_by_frames(count)
    if not 0 < count < min(len(dataset.database), len(dataset.queries)):
        raise ValueError(f"{dataset.name}: cannot hold out {count} places of {len(dataset.database)} database "
                         f"and {len(dataset.queries)} query images")
    n_db, n_q = len(dataset.database), len(dataset.queries)
    train = dataset.subset(np.arange(n_q - count), np.arange(n_db - count), name=f"{dataset.name}-train")
    val = dataset.subset(np.arange(n_q - count, n_q), np.arange(n_db - count, n_db), name=f"{dataset.name}-val")
    return train, val
