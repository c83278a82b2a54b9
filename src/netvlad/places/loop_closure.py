"""The default loop-closure decision: consistent, distinctive and geometrically verified, with no threshold.

A SLAM map cannot afford one false loop closure, and a robot mapping a new route has no ground truth to calibrate
a distance threshold on. A candidate (the stream's best match of the current frame) is declared a loop closure only
when all three checks hold, the cheap ones first:

1. **consistent**: the last W frames (W = the sequence length L, or :attr:`LoopClosureConfig.window` single-frame)
   agree on one place moving at a plausible speed: along the straight path through the candidate at a velocity of
   ±0.8 … 1.25 entries per frame (forward or backward), at least ``min_consistency`` of those frames had their own
   best match within ``tolerance`` entries of the path; and the best trajectory among the shortlist's entries
   within ``neighbourhood`` of the candidate ends within ``tolerance`` of it (else the consistency is 0: the
   frames agree on a neighbouring entry, not on the candidate). The closure's *place* is where that trajectory
   ends, not the single frame's best match: one frame's nearest neighbour can sit a few entries behind or ahead of
   where the window's frames line up, and a pose graph given the neighbour would tie the frame to the wrong pose.
   The other checks are of that place.
2. **distinctive**, self-calibrated on the map as it grows: each frame's L2 distances to (a sample of) the
   searchable map give a robust location and scale (median, 1.4826 × MAD); the candidate's *distinctiveness* is
   the mean robust z-score of the path's distances, (median − d) / scale, over the window; and its *ratio* is its
   trajectory distance (:class:`netvlad.match.trajectory_distance.TrajectoryDistance`, the stream's sequence scorer)
   over the best one among the shortlist's candidates farther than ``neighbourhood`` entries from it (a Lowe-style
   ratio against the runner-up place; trajectories forward or backward). A frame lookalike to many places (a whole
   traverse under one condition, the last frames before the excluded window) scores a ratio near 1.
3. **verified**, self-calibrated on the frame itself: mutual nearest neighbours of the two frames' dense local
   features (:mod:`netvlad.extract.local_features`) and a RANSAC homography
   (:func:`netvlad.match.verify.matching.ransac_inliers`, as in spatial re-ranking) leave at least ``min_inliers``
   inliers, and at least ``min_geometric`` times (and more than) the most inliers the same frame gets against
   places it is known not to be (its ``null``): the runner-up place and ``null_samples`` map frames drawn at
   random (seeded by the frame). How many inliers two unrelated views share depends on the scene — a street of
   repeated facades gives unrelated pairs as many as a true revisit of an open campus — so no absolute count is
   safe across routes; a count relative to the frame's own unrelated pairs is. It runs only on candidates that
   passed 1 and 2.
4. **supported** by the window: at least ``min_support`` of the last W frames (this one included) passed 1–3 on
   their own with places on a straight path through this frame's place (at ±0.8 … 1.25 entries per frame, within
   ``tolerance``). One frame's verification can be fooled by a lookalike; several consecutive frames each
   verified against the places they line up with are a much stronger null, which lets 1–3 be looser. It costs
   no matching: each frame's outcome is kept.

Until the searchable map holds ``min_map`` frames no closure is declared (the distance distribution is not yet
known). The constants were chosen across routes with known revisits, leave-one-route-out (docs/loop-closure.md).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, replace

import numpy as np
import torch

from netvlad.extract.local_features import LocalFeatures
from netvlad.match.trajectory_distance import VELOCITIES, TrajectoryDistance
from netvlad.match.verify.matching import mutual_nearest, ransac_inliers

logger = logging.getLogger(__name__)

MAD_SCALE = 1.4826  # MAD of a normal distribution → its standard deviation


@dataclass(frozen=True)
class LoopClosureConfig:
    """The default decision's rule. ``min_map`` searchable frames before any closure; ``sample`` map frames (evenly
    spaced) per frame's distance distribution; ``window`` frames checked for consistency without a sequence
    length; ``min_consistency`` share of them on the path, within ``tolerance`` entries; ``min_distinctiveness``
    mean robust z-score; ``max_ratio`` against the runner-up outside ``neighbourhood`` entries, among
    ``shortlist`` candidates (reported; the default accepts any); ``min_inliers`` RANSAC homography inliers within
    ``ransac_threshold`` cells of ``hypotheses`` draws, and ``min_geometric`` times the frame's null: the most
    inliers it has with the runner-up place or with ``null_samples`` random map frames; ``cells`` local features
    kept a frame (the strongest); ``min_support`` share of the window's frames that passed on their own, on the
    path."""

    min_map: int = 50
    sample: int = 1024
    window: int = 10
    min_consistency: float = 0.5
    tolerance: int = 2
    min_distinctiveness: float = 0.5
    max_ratio: float = float("inf")
    neighbourhood: int = 10
    shortlist: int = 50
    min_inliers: int = 12
    ransac_threshold: float = 1.5
    hypotheses: int = 128
    min_geometric: float = 1.0
    null_samples: int = 4
    cells: int = 128
    min_support: float = 0.8


@dataclass(frozen=True)
class Checks:
    """One frame's checks of its candidate; None where a check did not run (an earlier one failed, or too small
    a map). ``place``: the map id the checks are of (the candidate moved to where the window's trajectory ends);
    ``accepted``: every check passed."""

    consistency: float | None = None
    distinctiveness: float | None = None
    ratio: float | None = None
    inliers: int | None = None
    accepted: bool = False
    check_ms: float = 0.0
    place: int | None = None
    runner_up: int | None = None  # the map id of the best place farther than ``neighbourhood`` (None: none)
    null_inliers: int | None = None  # the most inliers of the frame with places it is not (runner-up, random)
    support: float | None = None  # share of the window's frames that passed on their own, on the path


@dataclass
class _Past:
    """What the detector remembers of a recent frame."""

    descriptor: np.ndarray
    best: int  # its own best match (−1: none)
    median: float  # its distance distribution (nan: not calibrated)
    scale: float


class LoopClosureDetector:
    """Decides each frame's loop closure; feed frames in order through :meth:`check` then :meth:`add`.

    ``length``: the stream's sequence length (None: single frame, ``config.window`` frames of consistency).
    """

    def __init__(self, config: LoopClosureConfig = LoopClosureConfig(), length: int | None = None) -> None:
        self.config = config
        self.window = int(length or config.window)
        self.trajectory = TrajectoryDistance(self.window, shortlist=config.shortlist)
        self.past: deque[_Past] = deque(maxlen=self.window)
        self.passed: deque[int | None] = deque(maxlen=self.window)  # each frame's place where it passed 1–3
        self.local: list[LocalFeatures] = []
        self.said_small = self.said_no_cells = False

    def add(self, local: LocalFeatures | None) -> None:
        """Keep the frame just checked's local features (its id is the next database id; None: not described,
        no geometric check with it)."""
        self.local.append(local)

    def _calibrate(self, descriptor: np.ndarray, database: np.ndarray, searchable: int) -> tuple[float, float]:
        """(median, robust scale) of the frame's L2 distances to up to ``sample`` evenly spaced searchable rows."""
        if searchable < self.config.min_map:
            return float("nan"), float("nan")
        rows = np.unique(np.linspace(0, searchable - 1, min(searchable, self.config.sample)).astype(np.int64))
        sample = np.asarray(database[rows], np.float32)
        squared = np.einsum("nd,nd->n", sample, sample) + float(descriptor @ descriptor) - 2 * (sample @ descriptor)
        distances = np.sqrt(np.maximum(squared, 0))
        median = float(np.median(distances))
        return median, MAD_SCALE * float(np.median(np.abs(distances - median)))

    def check(self, descriptor: np.ndarray, local: LocalFeatures | None, candidate: int | None, shortlist: np.ndarray,
              database: np.ndarray, searchable: int, frame: int) -> Checks:
        """The checks of ``candidate`` (a database id, or None) for the current frame ``(D,)``; ``shortlist``
        ``(M,)`` its search's ids (−1: none), ``database`` ``(count, D)`` of which ``searchable`` rows may match;
        ``frame`` seeds RANSAC (the same stream gives the same answers); ``local`` None: no geometric check."""
        start = time.perf_counter()
        median, scale = self._calibrate(descriptor, database, searchable)
        shortlist = np.asarray(shortlist, dtype=np.int64)
        best = int(shortlist[0]) if len(shortlist) and shortlist[0] >= 0 else -1
        self.past.append(_Past(np.asarray(descriptor, np.float32), best, median, scale))
        self.trajectory.history.append(self.past[-1].descriptor)
        self.passed.append(None)
        if np.isnan(median):
            if searchable > 0 and not self.said_small:
                logger.info("loop closures need %d searchable frames to calibrate their distance distribution; "
                            "none is declared before", self.config.min_map)
                self.said_small = True
            return Checks(check_ms=1000 * (time.perf_counter() - start))
        if candidate is None:
            return Checks(check_ms=1000 * (time.perf_counter() - start))
        checks = self._cheap(candidate, shortlist[shortlist >= 0], database, searchable)
        place = checks.place
        if checks.accepted:  # unverified (no local features) is not accepted
            inliers = null = None
            if local is not None and self.local[place] is not None:
                others = self.null_frames(checks.runner_up, searchable, frame)
                counts = self.inliers_many(local, [self.local[place], *others], frame)  # one batched RANSAC
                inliers, null = counts[0], max([0, *counts[1:]])
            # above the null, never tied with it: a place it is not verifying as well shows nothing
            verified = inliers is not None and inliers >= self.config.min_inliers and \
                inliers >= self.config.min_geometric * null and inliers > null
            checks = replace(checks, inliers=inliers, null_inliers=null, accepted=verified)
        if checks.accepted:
            self.passed[-1] = place
        support = self.support(place)
        return replace(checks, support=support, accepted=checks.accepted and support >= self.config.min_support,
                       check_ms=1000 * (time.perf_counter() - start))

    def support(self, place: int) -> float:
        """Share of the window's frames (W, this one included) that passed on their own at a place on a straight
        path through ``place`` (d frames back: d × 0.8 … 1.25 entries away, either direction, within
        ``tolerance``)."""
        low, high, tolerance = min(VELOCITIES), max(VELOCITIES), self.config.tolerance
        hits = 0
        for d, other in enumerate(reversed(self.passed)):
            if other is not None and low * d - tolerance <= abs(place - other) <= high * d + tolerance:
                hits += 1
        return hits / self.window

    def _cheap(self, candidate: int, shortlist: np.ndarray, database: np.ndarray, searchable: int) -> Checks:
        """Consistency, distinctiveness and ratio of the place ``candidate`` stands for (its ``place``: where the
        best trajectory within ``neighbourhood`` of it ends, when within ``tolerance``); ``accepted`` when the three
        pass."""
        cfg = self.config
        pool = np.union1d(shortlist, [candidate])
        forward = self.trajectory.scores(pool, database, searchable)
        # moving backward along the map is moving forward along it reversed: entry i is row searchable − 1 − i
        backward = self.trajectory.scores(searchable - 1 - pool, database[:searchable][::-1], searchable)
        scores = np.minimum(forward, backward)
        near = np.abs(pool - candidate) <= cfg.neighbourhood
        end = int(pool[near][np.argmin(scores[near])])
        place = end if abs(end - candidate) <= cfg.tolerance else candidate
        consistency, distinctiveness = self._path(place, database, searchable)
        if place != end:
            consistency = 0.0  # the last frames' best trajectory around here ends at another entry
        own = float(scores[np.searchsorted(pool, place)])
        far = np.abs(pool - place) > cfg.neighbourhood
        runner_up = float(scores[far].min()) if far.any() else float("inf")
        other = int(pool[far][np.argmin(scores[far])]) if far.any() and np.isfinite(runner_up) else None
        if not np.isfinite(runner_up):  # no other place to tell it from: not shown distinctive
            ratio = 1.0
        else:
            ratio = own / runner_up if runner_up > 0 else float("inf")
        accepted = (consistency >= cfg.min_consistency and distinctiveness >= cfg.min_distinctiveness
                    and ratio <= cfg.max_ratio)
        return Checks(consistency, distinctiveness, ratio, None, accepted, place=place, runner_up=other)

    def _path(self, candidate: int, database: np.ndarray, searchable: int) -> tuple[float, float]:
        """(consistency, distinctiveness) along the best straight path through ``candidate``: the velocity
        (±``VELOCITIES``) on which most of the window's frames had their own best match, ties broken by the
        smaller mean distance."""
        past = list(self.past)[::-1]  # j = 0 is the current frame
        steps = np.arange(len(past))
        bests = np.array([p.best for p in past])
        best_key, best_value = None, (0.0, float("-inf"))
        for velocity in (*VELOCITIES, *(-v for v in VELOCITIES)):
            path = candidate - np.rint(velocity * steps).astype(np.int64)
            inside = (path >= 0) & (path < searchable)
            agree = float(np.mean(inside & (bests >= 0) & (np.abs(bests - path) <= self.config.tolerance)))
            rows = np.asarray(database[path[inside]], np.float32)
            window = np.stack([p.descriptor for p, ok in zip(past, inside, strict=True) if ok])
            distances = np.linalg.norm(rows - window, axis=1)
            key = (agree, -float(distances.mean()))
            if best_key is None or key > best_key:
                calibrated = [(p.median - d) / p.scale for p, d in
                              zip([p for p, ok in zip(past, inside, strict=True) if ok], distances, strict=True)
                              if np.isfinite(p.median) and p.scale > 0]
                best_key, best_value = key, (agree, float(np.mean(calibrated)) if calibrated else float("-inf"))
        return best_value

    def null_frames(self, runner_up: int | None, searchable: int, frame: int) -> list[LocalFeatures]:
        """The local features of the places the frame is known not to be: ``null_samples`` of the first
        ``searchable`` map frames drawn at random (seeded by ``frame``, with replacement: more samples extend the
        same draw), then the runner-up place; frames without features left out."""
        rows = [int(r) for r in np.random.default_rng(frame).integers(0, searchable, size=self.config.null_samples)]
        rows += [] if runner_up is None else [runner_up]
        return [self.local[r] for r in rows if self.local[r] is not None]

    def null(self, local: LocalFeatures, runner_up: int | None, searchable: int, frame: int) -> int:
        """The most RANSAC inliers ``local`` has with :meth:`null_frames` (0: none)."""
        return max([0, *self.inliers_many(local, self.null_frames(runner_up, searchable, frame), frame)])

    def inliers(self, query: LocalFeatures, candidate: LocalFeatures, seed: int = 0) -> int:
        """RANSAC homography inliers among the mutual nearest neighbours of two frames' local features."""
        return self.inliers_many(query, [candidate], seed)[0]

    def inliers_many(self, query: LocalFeatures, candidates: list[LocalFeatures], seed: int = 0) -> list[int]:
        """:meth:`inliers` of ``query`` with each of ``candidates``, in one batched RANSAC; each count equals the
        pair's own (the same ``seed``-ed hypotheses)."""
        if not candidates:
            return []
        if min(len(query), *(len(c) for c in candidates)) < self.config.min_inliers and not self.said_no_cells:
            logger.info("frames of %d local features are fewer than the %d inliers a geometric check needs: no "
                        "loop closure can be verified; describe frames at a larger --size",
                        min(len(query), *(len(c) for c in candidates)), self.config.min_inliers)
            self.said_no_cells = True
        width = max(len(c) for c in candidates)
        vectors = torch.zeros(len(candidates), width, query.descriptors.shape[1])
        xy = torch.zeros(len(candidates), width, 2, dtype=torch.float64)
        valid = torch.zeros(len(candidates), width, dtype=torch.bool)
        for i, c in enumerate(candidates):
            vectors[i, :len(c)] = torch.from_numpy(c.vectors())
            xy[i, :len(c)] = torch.from_numpy(c.xy.astype(np.float64))
            valid[i, :len(c)] = True
        partner, mutual = mutual_nearest(torch.from_numpy(query.vectors()), vectors, valid)
        src = torch.from_numpy(query.xy.astype(np.float64))[None].expand(len(candidates), -1, -1)
        dst = torch.gather(xy, 1, partner[..., None].expand(-1, -1, 2))
        generator = torch.Generator().manual_seed(int(seed))
        draws = torch.rand(1, self.config.hypotheses, 4, generator=generator, dtype=torch.float64)
        counts = ransac_inliers(src, dst, mutual, self.config.ransac_threshold, self.config.hypotheses,
                                draws=draws.expand(len(candidates), -1, -1))
        small = [min(len(query), len(c)) < self.config.min_inliers for c in candidates]
        return [0 if tiny else int(n) for n, tiny in zip(counts, small, strict=True)]
