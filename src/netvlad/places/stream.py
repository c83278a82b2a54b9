"""Place recognition over a live stream: each frame is described, searched and (optionally) sequence-matched.

Loop-closure mode (no map): the frame is searched against the database of the frames before it, leaving out
those of the last ``exclude_recent`` seconds, then added to it. Without ``threshold`` a match is a loop closure
when :class:`netvlad.places.loop_closure.LoopClosureDetector` finds it consistent, distinctive and geometrically
verified (no threshold, no ground truth needed), and an accepted closure's match is the place the checks are of
(the search's best moved, by at most the consistency tolerance, to where the last frames' trajectory ends); with
``threshold`` when its distance is at or under it (the checks' values are reported either way).
Localisation mode (a :class:`netvlad.places.localise.PlaceIndex`): the frame is searched against the
prebuilt map; a match at or under ``threshold`` is a localisation. With ``sequence`` L the decision reads a
causal sequence score (the last L frames along a constant-velocity trajectory over every searchable entry: by
default the mean squared L2 distance, as ``netvlad evaluate --sequence`` ranks, or the same over distances
standardised over the frames seen so far; or the mean L2 distance, or SeqSLAM's contrast-normalised score, over
the frame's shortlist, see :mod:`netvlad.places.stream_sequence`) instead of the single-frame distance.
``latency_ms`` is describe + search + sequence + checks + add of one frame (decoding excluded); ``check_ms`` the
loop-closure checks alone.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from netvlad.data.frames import Frame
from netvlad.errors import BadInputError
from netvlad.eval.pr import PRCurve, pr_curve
from netvlad.extract.local_features import describe_with_local, image_tensor, local_stage
from netvlad.match.sequence import DEFAULT_STREAM_SCORE, STREAM_SCORES, signed_stream_scores
from netvlad.models import PlaceModel
from netvlad.places.database import PlaceDatabase
from netvlad.places.database_config import DatabaseConfig
from netvlad.places.loop_closure import Checks, LoopClosureConfig, LoopClosureDetector
from netvlad.places.stream_sequence import StreamSequence

logger = logging.getLogger(__name__)
NO_POSITIONS = "no positions (frames or map): precision, recall and PR AUC cannot be scored"



@dataclass(frozen=True)
class StreamConfig:
    """``k`` matches searched per frame, ``exclude_recent`` seconds (or frames) left out of loop-closure searches,
    ``threshold`` the largest L2 distance accepted as a match (with ``sequence`` L frames, by ``sequence_score``:
    the default ``"diagonal"``, the largest mean squared trajectory distance; ``"diagonal-causal-standardised"``,
    the largest mean standardised distance; ``"distance"``, mean trajectory distance; ``"seqslam"``, the smallest
    SeqSLAM score; None: any; below 0 only for a score that may be negative), ``radius`` metres within which a
    match is correct (ground truth, where frames carry positions), ``decision`` the default loop-closure rule (used
    without ``threshold``)."""

    k: int = 5
    exclude_recent: float = 30.0
    threshold: float | None = None
    sequence: int | None = None
    sequence_score: str = DEFAULT_STREAM_SCORE
    radius: float = 25.0
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    decision: LoopClosureConfig = field(default_factory=LoopClosureConfig)

    def __post_init__(self) -> None:
        if not self.exclude_recent >= 0:
            raise BadInputError(f"exclude_recent must be ≥ 0 seconds, got {self.exclude_recent}",
                                hint="--exclude-recent SECONDS ≥ 0")
        if self.k < 1 or (self.sequence is not None and self.sequence < 2):
            raise BadInputError(f"k must be ≥ 1 and sequence ≥ 2 frames, got {self.k} and {self.sequence}")
        if self.threshold is not None and not (math.isfinite(self.threshold) and (
                self.threshold > 0 or self.sequence is not None and self.sequence_score in STREAM_SCORES
                and STREAM_SCORES.get(self.sequence_score).signed)):
            raise BadInputError(f"threshold {self.threshold} is a distance here and must be a number > 0",
                                hint="--threshold D > 0 (a score that may be negative: --sequence L --sequence-score "
                                     f"{' or '.join(signed_stream_scores())})")


@dataclass(frozen=True)
class FrameResult:
    """One frame's answer; :meth:`to_dict` is its JSON line."""

    frame: int
    time: float
    name: str
    match: str | None
    distance: float | None
    score: float | None
    loop_closure: bool
    position: tuple[float, float] | None  # of the match, where the database (or map) has one
    latency_ms: float
    correct: bool | None = None  # top-1 within the radius (ground truth known), else None
    has_positive: bool | None = None
    match_time: float | None = None
    checks: Checks = field(default_factory=Checks)
    position_distance: float | None = None  # metres between the frame's and the match's positions, where known

    def to_dict(self) -> dict:
        """The JSON keys of ``netvlad stream``."""
        checks = self.checks
        return {"frame": self.frame, "time": round(self.time, 6), "name": self.name, "match": self.match,
                "match_time": _rounded(self.match_time), "distance": _rounded(self.distance),
                "score": _rounded(self.score), "loop_closure": self.loop_closure,
                "consistency": _rounded(checks.consistency, 3), "distinctiveness": _rounded(checks.distinctiveness, 3),
                "ratio": _rounded(checks.ratio, 4), "inliers": checks.inliers, "null_inliers": checks.null_inliers,
                "support": _rounded(checks.support, 3),
                "position": None if self.position is None else [round(float(v), 3) for v in self.position],
                "position_distance": _rounded(self.position_distance, 3), "latency_ms": round(self.latency_ms, 3),
                "check_ms": round(checks.check_ms, 3)}


def _rounded(value: float | None, digits: int = 6) -> float | None:
    """``value`` rounded for JSON (None stays None, infinities become None)."""
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def describe_image(model: PlaceModel, image, device: torch.device | str = "cpu", runner=None) -> np.ndarray:
    """The global descriptor ``(dim,)`` float32 of one RGB PIL ``image`` in the model's preprocessing (resized here
    unless a :meth:`netvlad.data.frames.FrameSource.decoded_as` source already did), by ``runner`` (an engine of
    :func:`netvlad.extract.engine.make_runner`, e.g. onnxruntime) or by the model itself."""
    tensor = image_tensor(model, image)
    if runner is not None:
        return np.asarray(runner(tensor), dtype=np.float32)[0]
    with torch.inference_mode():
        return model(tensor.to(device))[0].float().cpu().numpy()


class StreamMatcher:
    """Runs frames through describe → search → sequence → decide; see the module docstring.

    ``place_index``: a loaded :class:`netvlad.places.localise.PlaceIndex` (localisation) or None (loop closure).
    Every frame is also added to :attr:`database` (searched in loop-closure mode, kept for saving in both).
    ``runner``: the inference engine that describes frames (None: torch's, as extraction runs it, traced).
    ``database``: a saved :class:`PlaceDatabase` of an earlier stream to continue (loop closures): its frames are
    searched and verified (with their saved local features) as if the stream had never stopped, except that the
    checks' window (and a sequence) fills again over the first frames; a frame timed at or before the database's
    newest entry (a source whose times restart, e.g. frame counts) has every time shifted to follow it.
    """

    def __init__(self, model: PlaceModel, config: StreamConfig = StreamConfig(), place_index=None,
                 device: torch.device | str = "cpu", fingerprint: str | None = None, runner=None,
                 database: PlaceDatabase | None = None) -> None:
        self.model, self.config, self.place_index, self.device = model.eval().to(device), config, place_index, device
        if runner is None:
            from netvlad.extract.engine import make_runner

            runner = make_runner(self.model, "torch", device)
        self.runner = runner.traced() if hasattr(runner, "traced") else runner  # as extraction describes images
        self.database = self._resumed(database, fingerprint) if database is not None else \
            PlaceDatabase(model.output_dim, config.database, fingerprint)
        self.shift: float | None = None if self.database.count else 0.0  # added to frame times (see ``database``)
        self.sequence = None
        if config.sequence:
            self.sequence = StreamSequence(config.sequence, model.output_dim,
                                           place_index.store.descriptors if place_index is not None else None,
                                           config.sequence_score)
        self.detector = self.cut = None
        if place_index is None:  # loop closures: the default decision's checks, local features for verification
            self.detector = LoopClosureDetector(config.decision, config.sequence)
            self.detector.local = self.database.local  # one list: the database keeps (and saves) every frame's
            self.cut = local_stage(self.model)
            if hasattr(self.runner, "with_local") and config.threshold is None:  # one traced pass gives both
                self.runner = self.runner.with_local(self.cut)
        self.results: list[FrameResult] = []
        self.searched = 0  # frames that had something to search

    def _resumed(self, database: PlaceDatabase, fingerprint: str | None) -> PlaceDatabase:
        """``database`` checked to continue: loop-closure mode, this model's descriptors."""
        if self.place_index is not None:
            raise BadInputError("a stream against a map cannot resume a database of loop closures; drop one")
        if database.dim != self.model.output_dim or (fingerprint and database.fingerprint and
                                                     database.fingerprint != fingerprint):
            raise BadInputError(f"the database to resume holds {database.dim}-D descriptors of model "
                                f"{database.fingerprint}, not this model's ({self.model.output_dim}-D, {fingerprint})",
                                hint="resume with the model that described its frames")
        return database

    def _time(self, frame: Frame) -> float:
        """The frame's time in the database: shifted to follow a resumed database's newest entry where needed."""
        if self.shift is None:
            newest = float(self.database.times[:self.database.count].max())
            self.shift = newest + 1.0 - frame.time if frame.time <= newest else 0.0
            if self.shift:
                logger.info("frame times start at %g, not after the resumed database's newest (%g): shifted by %g",
                            frame.time, newest, self.shift)
        return frame.time + self.shift

    def _candidates(self, descriptor: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray]:
        """(distances ``(k,)``, ids ``(k,)``): database ids, or map store rows; −1 where none."""
        k = max(self.config.k, self.sequence.shortlist if self.sequence else 1,
                self.detector.config.shortlist if self.detector else 1)
        if self.place_index is not None:
            distances, rows = self.place_index.search(descriptor[None], min(k, len(self.place_index)))
            return distances[0], rows[0]
        distances, ids = self.database.search(descriptor[None], k, exclude_after=now - self.config.exclude_recent)
        return distances[0], ids[0]

    def _describe_match(self, id_: int) -> tuple[str, tuple[float, float] | None]:
        if self.place_index is not None:
            index = self.place_index
            position = index.positions[np.searchsorted(index.rows, id_)]
            return index.store.names[id_], (None if np.isnan(position).any() else tuple(map(float, position)))
        position = self.database.positions[id_]
        return self.database.names[id_], (None if np.isnan(position).any() else tuple(map(float, position)))

    def process(self, frame: Frame) -> FrameResult:
        """Describe, search, sequence-match, decide and add one frame."""
        start = time.perf_counter()
        now = self._time(frame)
        local = None
        if self.detector is not None and self.config.threshold is None:  # a threshold decides without geometry
            descriptor, local = describe_with_local(self.model, frame.image, self.cut, self.device, self.runner,
                                                    self.config.decision.cells)
        else:
            descriptor = describe_image(self.model, frame.image, self.device, self.runner)
        distances, ids = self._candidates(descriptor, now)
        best, distance, score = None, None, None
        if ids[0] >= 0:
            self.searched += 1
            best, distance = int(ids[0]), float(distances[0])
        if self.sequence is not None:
            best, score, distance = self._sequence_step(descriptor, ids, now, best, distance)
        checks = Checks()
        if self.detector is not None:
            checks = self.detector.check(descriptor, local, best, ids, self.database.descriptors,
                                         self.database.prefix_until(now - self.config.exclude_recent),
                                         self.database.count)  # seeded by its id: a resumed stream draws the same
            if self.config.threshold is None and checks.accepted and checks.place != best:
                best = checks.place  # a closure is to where the last frames agree
                distance = float(np.linalg.norm(np.asarray(self.database.descriptors[best], np.float32) - descriptor))
        if self.detector is not None and self.config.threshold is None:
            accepted = checks.accepted
        elif self.sequence is not None and self.sequence.higher_is_better:
            accepted = score is not None and (self.config.threshold is None or score >= self.config.threshold)
        elif self.sequence is not None:
            accepted = score is not None and (self.config.threshold is None or score <= self.config.threshold)
        else:
            accepted = distance is not None and (self.config.threshold is None or distance <= self.config.threshold)
        position = frame.position
        self.database.add(descriptor[None], [frame.name], None if position is None else np.array([position]),
                          [now], [local])
        latency = 1000 * (time.perf_counter() - start)
        name, where = self._describe_match(best) if best is not None else (None, None)
        correct, has_positive = self._truth(frame, where, now)
        apart = (None if where is None or frame.position is None
                 else float(np.linalg.norm(np.subtract(where, frame.position))))
        match_time = None
        if best is not None and self.place_index is None:
            match_time = float(self.database.times[best])
        result = FrameResult(frame.index, now, frame.name, name, distance, score, bool(accepted), where,
                             latency, correct, has_positive, match_time, checks, apart)
        self.results.append(result)
        return result

    def _sequence_step(self, descriptor: np.ndarray, ids: np.ndarray, now: float, best, distance):
        """(best id, sequence score, its L2 distance) after the sequence step; the single-frame best without one."""
        if self.place_index is not None:
            database = self.place_index.store.descriptors
            seq_id, score = self.sequence.push(descriptor, ids)
        else:
            database = self.database.descriptors
            searchable = self.database.prefix_until(now - self.config.exclude_recent)
            seq_id, score = self.sequence.push(descriptor, ids, database, searchable)
        if seq_id is None:
            return best, None, distance
        return seq_id, score, float(np.linalg.norm(np.asarray(database[seq_id], np.float32) - descriptor))

    def _truth(self, frame: Frame, match_position, now: float) -> tuple[bool | None, bool | None]:
        """(top-1 within the radius, any searchable entry within it), or (None, None) without positions."""
        if frame.position is None:
            return None, None
        if self.place_index is not None:
            if np.isnan(self.place_index.positions).all():
                return None, None  # a map without positions: nothing to score against
            positions = self.place_index.positions
        else:  # entries before this frame's add, outside the excluded window
            keep = self.database.eligible(exclude_after=now - self.config.exclude_recent)[:-1]
            positions = self.database.positions[:-1][keep]
        here = np.asarray(frame.position, dtype=np.float64)
        has_positive = bool((np.linalg.norm(positions - here, axis=1) <= self.config.radius).any())
        correct = match_position is not None and float(np.linalg.norm(np.asarray(match_position) - here)) \
            <= self.config.radius
        return bool(correct and has_positive), has_positive

    def run(self, frames: Iterable[Frame]) -> Iterator[FrameResult]:
        """:meth:`process` each frame of ``frames``, yielding its result."""
        for frame in frames:
            yield self.process(frame)

    def pr(self) -> PRCurve | None:
        """PR curve of the frames so far (score: −distance or −sequence score), when they carry positions."""
        known = [r for r in self.results if r.has_positive is not None]
        if not known:
            return None
        if self.sequence is not None:
            sign = 1.0 if self.sequence.higher_is_better else -1.0
            value = [sign * r.score if r.score is not None else -np.inf for r in known]
        else:
            value = [-r.distance if r.distance is not None else -np.inf for r in known]
        scores = np.asarray(value, dtype=np.float64)
        return pr_curve(scores, [bool(r.correct) for r in known], [bool(r.has_positive) for r in known])

    def summary(self) -> dict:
        """Frames, loop closures, latency and checks' time p50/p99/mean (ms) and, with positions, the PR metrics of
        the ranking named by ``pr_ranking`` and the precision and recall (%) of the decision taken (``decision``);
        without positions, ``unscored`` says why none of them is given."""
        out = {"frames": len(self.results), "searched": self.searched,
               "loop_closures": int(sum(r.loop_closure for r in self.results)),
               "latency_ms": _percentiles([r.latency_ms for r in self.results]),
               "check_ms": _percentiles([r.checks.check_ms for r in self.results])}
        known = [r for r in self.results if r.has_positive is not None]
        if known:
            true = sum(bool(r.loop_closure and r.correct) for r in known)
            accepted = sum(r.loop_closure for r in known)
            positives = sum(bool(r.has_positive) for r in known)
            out["decision"] = {"accepted": accepted, "true": true, "false": accepted - true,
                               "precision": round(100.0 * true / accepted, 2) if accepted else None,
                               "recall": round(100.0 * true / positives, 2) if positives else None}
        else:
            out["unscored"] = NO_POSITIONS
        curve = self.pr()
        if curve is not None:
            out["pr_ranking"] = (f"sequence L={self.config.sequence} ({self.config.sequence_score} score)"
                                 if self.sequence is not None else "single-frame top-1 (L2 distance)")
            out |= curve.summary()
            at_100 = curve.threshold_at_precision(1.0)
            if at_100 is not None and not math.isinf(at_100):
                higher = self.sequence is not None and self.sequence.higher_is_better
                at_100 = at_100 if higher else -at_100  # a score, or a distance
            out["threshold_at_100_precision"] = None if at_100 is None or math.isinf(at_100) else round(at_100, 6)
        return out


def _percentiles(values: list[float]) -> dict:
    """p50, p99 and mean of ``values`` (ms; zeros when empty)."""
    array = np.asarray(values, dtype=np.float64) if values else np.zeros(1)
    return {"p50": round(float(np.percentile(array, 50)), 3), "p99": round(float(np.percentile(array, 99)), 3),
            "mean": round(float(array.mean()), 3)}


def cluster_on_frames(model: PlaceModel, frames, num_images: int = 200, device: torch.device | str = "cpu",
                      progress: bool = False, batch_size: int = 8, workers: int = 0,
                      cache: Path | str | bool = True) -> bool:
    """k-means centroids of an off-the-shelf NetVLAD from ``num_images`` frames sampled evenly along ``frames`` (a
    frame source, read once); a model that needs none is left as it is. Returns whether centroids were set (computed,
    or reused from ``cache``: see :func:`netvlad.extract.clusters.cluster_if_off_the_shelf`)."""
    import tempfile

    from netvlad.extract.clusters import ClusterConfig, cluster_if_off_the_shelf, needs_clusters

    if not needs_clusters(model):
        return False
    with tempfile.TemporaryDirectory(prefix="netvlad-stream-") as folder:
        paths = []
        step = max(1, len(frames) // num_images) if len(frames) else 1
        for i, frame in enumerate(frames):
            if i % step == 0 and len(paths) < num_images:
                paths.append(Path(folder) / f"{len(paths):05d}.png")
                frame.image.save(paths[-1])
        return cluster_if_off_the_shelf(model, paths, ClusterConfig(num_images=num_images), device, progress,
                                        batch_size, workers, cache=cache)
