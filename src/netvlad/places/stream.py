"""Place recognition over a live stream: each frame is described, searched and (optionally) sequence-matched.

Loop-closure mode (no map): the frame is searched against the database of the frames before it, leaving out
those of the last ``exclude_recent`` seconds, then added to it; a match at or under ``threshold`` is a loop
closure. Localisation mode (a :class:`netvlad.places.localise.PlaceIndex`): the frame is searched against the
prebuilt map; a match at or under ``threshold`` is a localisation. With ``sequence`` L the decision reads a
causal sequence score of the frame's shortlist (the last L frames along a constant-velocity trajectory: its mean
L2 distance, or SeqSLAM's contrast-normalised score, see :mod:`netvlad.places.stream_sequence`) instead of the
single-frame distance. ``latency_ms`` is describe + search + sequence + add of one frame (decoding excluded).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from netvlad.data.frames import Frame
from netvlad.data.images import resize_image
from netvlad.errors import BadInputError
from netvlad.eval.pr import PRCurve, pr_curve
from netvlad.models import PlaceModel
from netvlad.places.database import DatabaseConfig, PlaceDatabase
from netvlad.places.stream_sequence import StreamSequence

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamConfig:
    """``k`` matches searched per frame, ``exclude_recent`` seconds (or frames) left out of loop-closure searches,
    ``threshold`` the largest L2 distance accepted as a match (with ``sequence`` L frames: the largest trajectory
    distance, or with ``sequence_score="seqslam"`` the smallest SeqSLAM score; None: any), ``radius`` metres
    within which a match is correct (ground truth, where frames carry positions)."""

    k: int = 5
    exclude_recent: float = 30.0
    threshold: float | None = None
    sequence: int | None = None
    sequence_score: str = "distance"
    radius: float = 25.0
    database: DatabaseConfig = field(default_factory=DatabaseConfig)

    def __post_init__(self) -> None:
        if not self.exclude_recent >= 0:
            raise BadInputError(f"exclude_recent must be ≥ 0 seconds, got {self.exclude_recent}",
                                hint="--exclude-recent SECONDS ≥ 0")
        if self.k < 1 or (self.sequence is not None and self.sequence < 2):
            raise BadInputError(f"k must be ≥ 1 and sequence ≥ 2 frames, got {self.k} and {self.sequence}")


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

    def to_dict(self) -> dict:
        """The JSON keys of ``netvlad stream``."""
        return {"frame": self.frame, "time": round(self.time, 6), "name": self.name, "match": self.match,
                "distance": None if self.distance is None else round(self.distance, 6),
                "score": None if self.score is None else round(self.score, 6), "loop_closure": self.loop_closure,
                "position": None if self.position is None else [round(float(v), 3) for v in self.position],
                "latency_ms": round(self.latency_ms, 3)}


def describe_image(model: PlaceModel, image, device: torch.device | str = "cpu", runner=None) -> np.ndarray:
    """The global descriptor ``(dim,)`` float32 of one RGB PIL ``image`` in the model's preprocessing, by
    ``runner`` (an engine of :func:`netvlad.extract.engine.make_runner`, e.g. onnxruntime) or by the model itself."""
    pre = model.config.preprocessing
    image = resize_image(image, pre.resize, pre.size)
    tensor = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    if runner is not None:
        return np.asarray(runner(tensor[None]), dtype=np.float32)[0]
    with torch.inference_mode():
        return model(tensor[None].to(device))[0].float().cpu().numpy()


class StreamMatcher:
    """Runs frames through describe → search → sequence → decide; see the module docstring.

    ``place_index``: a loaded :class:`netvlad.places.localise.PlaceIndex` (localisation) or None (loop closure).
    Every frame is also added to :attr:`database` (searched in loop-closure mode, kept for saving in both).
    ``runner``: the inference engine that describes frames (None: the torch model).
    """

    def __init__(self, model: PlaceModel, config: StreamConfig = StreamConfig(), place_index=None,
                 device: torch.device | str = "cpu", fingerprint: str | None = None, runner=None) -> None:
        self.model, self.config, self.place_index, self.device = model.eval().to(device), config, place_index, device
        self.runner = runner
        self.database = PlaceDatabase(model.output_dim, config.database, fingerprint)
        self.sequence = None
        if config.sequence:
            self.sequence = StreamSequence(config.sequence, model.output_dim,
                                           place_index.store.descriptors if place_index is not None else None,
                                           config.sequence_score)
        self.results: list[FrameResult] = []
        self.searched = 0  # frames that had something to search

    def _candidates(self, descriptor: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray]:
        """(distances ``(k,)``, ids ``(k,)``): database ids, or map store rows; −1 where none."""
        k = max(self.config.k, self.sequence.shortlist if self.sequence else 1)
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
        descriptor = describe_image(self.model, frame.image, self.device, self.runner)
        distances, ids = self._candidates(descriptor, frame.time)
        best, distance, score = None, None, None
        if ids[0] >= 0:
            self.searched += 1
            best, distance = int(ids[0]), float(distances[0])
        if self.sequence is not None:
            best, score, distance = self._sequence_step(descriptor, ids, frame.time, best, distance)
        if self.sequence is not None and self.sequence.higher_is_better:
            accepted = score is not None and (self.config.threshold is None or score >= self.config.threshold)
        elif self.sequence is not None:
            accepted = score is not None and (self.config.threshold is None or score <= self.config.threshold)
        else:
            accepted = distance is not None and (self.config.threshold is None or distance <= self.config.threshold)
        position = frame.position
        self.database.add(descriptor[None], [frame.name], None if position is None else np.array([position]),
                          [frame.time])
        latency = 1000 * (time.perf_counter() - start)
        name, where = self._describe_match(best) if best is not None else (None, None)
        correct, has_positive = self._truth(frame, where)
        result = FrameResult(frame.index, frame.time, frame.name, name, distance, score, bool(accepted), where,
                             latency, correct, has_positive)
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

    def _truth(self, frame: Frame, match_position) -> tuple[bool | None, bool | None]:
        """(top-1 within the radius, any searchable entry within it), or (None, None) without positions."""
        if frame.position is None:
            return None, None
        here = np.asarray(frame.position, dtype=np.float64)
        if self.place_index is not None:
            positions = self.place_index.positions
        else:  # entries before this frame's add, outside the excluded window
            keep = self.database.eligible(exclude_after=frame.time - self.config.exclude_recent)[:-1]
            positions = self.database.positions[:-1][keep]
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
        """Frames, loop closures, latency p50/p99/mean (ms) and, with positions, the PR metrics."""
        latency = np.array([r.latency_ms for r in self.results]) if self.results else np.zeros(1)
        out = {"frames": len(self.results), "searched": self.searched,
               "loop_closures": int(sum(r.loop_closure for r in self.results)),
               "latency_ms": {"p50": round(float(np.percentile(latency, 50)), 3),
                              "p99": round(float(np.percentile(latency, 99)), 3),
                              "mean": round(float(latency.mean()), 3)}}
        curve = self.pr()
        if curve is not None:
            out |= curve.summary()
            at_100 = curve.threshold_at_precision(1.0)
            if at_100 is not None and not math.isinf(at_100):
                higher = self.sequence is not None and self.sequence.higher_is_better
                at_100 = at_100 if higher else -at_100  # a score, or a distance
            out["threshold_at_100_precision"] = None if at_100 is None or math.isinf(at_100) else round(at_100, 6)
        return out
