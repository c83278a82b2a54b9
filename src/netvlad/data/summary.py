"""What ``netvlad data inspect`` reports: counts, extent, ground-truth coverage, image sizes."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from netvlad.constants import EVAL_RADIUS_M
from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.images import ImageDecodeError, image_size

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSummary:
    """Figures describing a dataset; ``lines()`` renders them for people.

    Examples:
        >>> from netvlad.data import GeoDataset, ImageList
        >>> street = ImageList("street", ["a.jpg", "b.jpg"], [[0.0, 0.0], [40.0, 0.0]])
        >>> summary = summarize(GeoDataset("toy", street, ImageList("walk", ["q.jpg"], [[5.0, 0.0]])), sample=0,
        ...                     skip_bad=True)  # the images do not exist: their sizes are not read
        >>> summary.num_database, summary.num_queries, summary.mean_positives, len(summary.unreadable)
        (2, 1, 1.0, 3)
        >>> summary.unreadable[0]
        ('street/a.jpg', 'image file not found')
    """

    name: str
    format: str
    num_database: int
    num_queries: int
    extent: dict  # side -> (min east, min north, max east, max north) metres
    zone: str
    radius: float
    frame_tolerance: int | None
    spacing: float | None
    spacing_assumed: bool
    queries_without_positive: int
    first_without_positive: str | None
    mean_positives: float
    sizes: dict  # side -> Counter of (height, width) over the sampled images
    sampled: dict  # side -> number of images whose size was read
    unreadable: tuple[tuple[str, str], ...]
    skipped: int
    sequences: dict = field(default_factory=dict)  # side -> one-line sequence order, or None where not recorded

    def lines(self) -> list[str]:
        """Human-readable lines, one figure each."""
        assumed = (", assumed: the frames carry no positions; set it with spacing= (--spacing)"
                   if self.spacing_assumed else "")
        truth = (f"±{self.frame_tolerance} frames ({self.spacing:g} m per frame{assumed})"
                 if self.frame_tolerance is not None else f"within {self.radius:g} m")
        out = [f"dataset      {self.name} ({self.format})",
               f"database     {self.num_database} images", f"queries      {self.num_queries} images",
               f"UTM zone     {self.zone}"]
        for side, (e0, n0, e1, n1) in self.extent.items():
            if self.frame_tolerance is not None and self.spacing:
                out.append(f"frames {side:<6}{e0 / self.spacing:.0f} .. {e1 / self.spacing:.0f} "
                           f"({e0:.1f} .. {e1:.1f} m along the route"
                           f"{' at the assumed spacing' if self.spacing_assumed else ''})")
                continue
            out.append(f"extent {side:<6}east {e0:.1f} .. {e1:.1f} m, north {n0:.1f} .. {n1:.1f} m "
                       f"({e1 - e0:.1f} × {n1 - n0:.1f} m)")
        missing = f" (first: {self.first_without_positive})" if self.first_without_positive else ""
        out += [f"ground truth {truth}",
                f"no positive  {self.queries_without_positive} of {self.num_queries} queries{missing}",
                f"positives    {self.mean_positives:.2f} per query on average"]
        for side, counter in self.sizes.items():
            common = ", ".join(f"{w}×{h} ({n})" for (h, w), n in counter.most_common(3)) or "-"
            more = f" and {len(counter) - 3} other sizes" if len(counter) > 3 else ""
            out.append(f"sizes {side:<7}{common}{more} [W×H, {self.sampled[side]} sampled]")
        for side, text in self.sequences.items():
            text = text or "none recorded (frame-numbered names, or CSV sequence/frame columns)"
            out.append(f"seq {side:<9}{text}")
        if self.unreadable:
            out.append(f"unreadable   {len(self.unreadable)} (first: {self.unreadable[0][0]}: {self.unreadable[0][1]})")
        if self.skipped:
            out.append(f"skipped      {self.skipped} bad entries while reading")
        return out


def sample_sizes(images: ImageList, sample: int, skip_bad: bool, bad: list) -> tuple[Counter, int]:
    """Counter of (height, width) over ``sample`` evenly spaced images (0 = all); unreadable ones go to ``bad``."""
    count = len(images) if sample <= 0 else min(sample, len(images))
    picks = np.unique(np.linspace(0, len(images) - 1, count).round().astype(int)) if count else []
    sizes: Counter = Counter()
    paths = images.paths()
    for i in picks:
        try:
            sizes[image_size(paths[i])] += 1
        except (ImageDecodeError, FileNotFoundError) as error:
            if not skip_bad:
                raise
            logger.warning("skipping %s", error)
            bad.append((str(paths[i]), str(error).split(": ", 1)[-1]))
    return sizes, len(picks)


def summarize(dataset: GeoDataset, radius: float = EVAL_RADIUS_M, sample: int = 500,
              skip_bad: bool = False) -> DatasetSummary:
    """Counts, extent (metres), queries without a positive within ``radius`` metres (or the frame tolerance), mean
    positives per query, and image sizes over up to ``sample`` images per side (0 = all).

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> summary = summarize(city)  # positives within 25 m: the city's street views are 10 m apart
        >>> summary.num_database, summary.num_queries, summary.queries_without_positive
        (20, 10, 0)
        >>> print("\\n".join(summary.lines()[:4]))
        dataset      city-test (dvgb)
        database     20 images
        queries      10 images
        UTM zone     33T
    """
    positives = dataset.positives(radius)
    counts = np.array([len(p) for p in positives])
    missing = np.flatnonzero(counts == 0)
    extent = {side: (*images.utm.min(axis=0), *images.utm.max(axis=0))
              for side, images in (("db", dataset.database), ("query", dataset.queries)) if len(images)}
    bad: list = []
    sizes, sampled = {}, {}
    for side, images in (("db", dataset.database), ("query", dataset.queries)):
        sizes[side], sampled[side] = sample_sizes(images, sample, skip_bad, bad)
    zone = dataset.database.zone
    return DatasetSummary(
        name=dataset.name, format=dataset.info.format or "?", num_database=len(dataset.database),
        num_queries=len(dataset.queries), extent=extent, zone=f"{zone[0]}{zone[1]}" if zone else "unknown",
        radius=radius, frame_tolerance=dataset.frame_tolerance if dataset.is_sequence else None,
        spacing=dataset.info.spacing, spacing_assumed=dataset.info.spacing_assumed,
        queries_without_positive=len(missing),
        first_without_positive=dataset.queries.names[missing[0]] if len(missing) else None,
        mean_positives=float(counts.mean()) if len(counts) else 0.0, sizes=sizes, sampled=sampled,
        unreadable=tuple(bad), skipped=len(dataset.info.skipped),
        sequences={side: images.sequence.describe() if images.sequence is not None else None
                   for side, images in (("db", dataset.database), ("query", dataset.queries))})
