"""A benchmark set replayed as ``netvlad stream`` sees it in loop-closure mode: one stream over a growing map.

The robot first drives the database route, then the query route, frame by frame; every frame goes through the same
:class:`netvlad.places.stream_sequence.StreamSequence` step ``netvlad stream`` runs (the family's causal settings),
against every frame streamed before it except those of the last ``exclude_recent`` frames (the stream's own recent
frames, left out as ``netvlad stream --exclude-recent`` leaves them out), and is then added to the map. Each
sequence of the route starts a fresh window (a standardised score keeps its statistics: they are what the camera
has seen), and each frame carries its recorded frame number, so a route with gaps (one condition's frames of a
drive) moves its trajectory by the frames it skipped. A set's distractor images (a map much larger than the
route) are in the map before the stream starts.

A query frame's best entry is correct when it is one of the query's positives (the set's tolerance: ±frames or
metres), or an earlier query frame within the same tolerance of it; an entry of the distractors never is. The
column's value is this sequence top-1 over every query frame (queries without a positive count as failures, as in
the offline Recall@1), in percent; the PR AUC and recall at 100 % precision of the score thresholded across
frames (what a loop-closure threshold is set on) are kept beside it.

Unlike an offline causal ranking over a fixed map (what ``netvlad stream`` computes against a prebuilt map, shown
equal by the stream tests), the map here holds the stream's own fresh entries, and the camera lingers near the
entries it has just added: a score that compares entries with their statistics over the frames seen is judged where
it is used.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from netvlad.search.exact import exact_search, plan_search

EXCLUDE_RECENT = 30  # frames; netvlad stream's default exclude_recent (30 s) at one frame a second


@dataclasses.dataclass(frozen=True)
class StreamReplay:
    """Per query frame (in the dataset's query order): its best map entry as a stream id (``best``, −1: none), its
    score (``score``, higher is surer; −inf: none), whether the entry is correct and whether any positive was
    searchable; ``recall`` the percent of query frames whose best is correct, and the PR summary of the scores."""

    best: np.ndarray
    score: np.ndarray
    correct: np.ndarray
    has_positive: np.ndarray

    @property
    def recall(self) -> float:
        """Sequence top-1 in percent of every query frame."""
        return 100.0 * float(self.correct.sum()) / max(len(self.correct), 1)

    def pr(self) -> dict:
        """``pr_auc`` (0..1) and ``recall_at_100_precision`` (%) of the scores thresholded across frames."""
        from netvlad.eval.pr import pr_curve

        summary = pr_curve(self.score, self.correct, self.has_positive).summary()
        return {k: summary[k] for k in ("pr_auc", "recall_at_100_precision")}


def route_order(sequence) -> np.ndarray:
    """Image indices sequence by sequence, each in frame order; the first index of each sequence is where a new
    window starts (see :func:`starts`)."""
    members = sequence.members()
    return np.concatenate(members) if members else np.zeros(0, np.int64)


def starts(sequence) -> np.ndarray:
    """``(N,)`` bool over :func:`route_order`: True where a sequence starts."""
    lengths = [len(m) for m in sequence.members()]
    flags = np.zeros(sum(lengths), bool)
    flags[np.cumsum([0, *lengths[:-1]])] = True
    return flags


def replay(method: str, config, database: np.ndarray, queries: np.ndarray, dataset, radius: float = 25.0,
           own: int | None = None, exclude_recent: int = EXCLUDE_RECENT) -> StreamReplay:
    """Stream ``dataset``'s database route then its query route through ``netvlad stream``'s sequence step
    ``method`` (a stream score) with causal ``config``; ``database`` ``(N, D)`` the set's own ``own`` rows (None:
    all) followed by distractors, ``queries`` ``(Q, D)``; see the module docstring."""
    from netvlad.places.stream_sequence import DIAGONAL as WHOLE_MAP
    from netvlad.places.stream_sequence import StreamSequence

    own = len(database) if own is None else int(own)
    db_sequence = dataset.database.sequence.subset(np.arange(own))  # the set's own route, not its distractors
    db_order, q_order = route_order(db_sequence), route_order(dataset.queries.sequence)
    if len(db_order) != own or len(q_order) != len(queries):
        raise ValueError(f"the routes' sequence orders cover {len(db_order)} / {len(q_order)} images, the "
                         f"descriptors {own} / {len(queries)}")
    extra = len(database) - own
    stream = np.concatenate([database[own:], database[:own][db_order], queries[q_order]]).astype(np.float32)
    new_window = np.concatenate([starts(db_sequence), starts(dataset.queries.sequence)])
    # recorded frame numbers: a route subsampled (one condition's frames of a drive) keeps its trajectory's speed
    frames = np.concatenate([db_sequence.frames[db_order], dataset.queries.sequence.frames[q_order]])
    matcher = StreamSequence(config.length, stream.shape[1], None, method, config)
    sign = 1.0 if matcher.higher_is_better else -1.0
    positives = dataset.positives(radius)
    own_positives = dataclasses.replace(dataset, database=dataset.queries).positives(radius)
    plan = plan_search(1, len(stream), stream.shape[1], matcher.shortlist)  # one query per frame, every row
    best, score = np.full(len(queries), -1, np.int64), np.full(len(queries), -np.inf)
    correct, has_positive = np.zeros(len(queries), bool), np.zeros(len(queries), bool)
    for t in range(own + len(queries)):  # t: the streamed frame's time (frames); its row is extra + t
        if new_window[t]:
            matcher.reset()
        searchable = extra + max(0, t - exclude_recent + 1)  # entries no newer than t − exclude_recent
        descriptor = stream[extra + t]
        candidates = (np.full(1, -1, np.int64) if method in WHOLE_MAP  # scored over every searchable entry
                      else _shortlist(descriptor, stream[:searchable], matcher.shortlist, plan))
        found, value = matcher.push(descriptor, candidates, stream, searchable, int(frames[t]))
        if t < own:
            continue
        i = q_order[t - own]
        earlier = q_order[:max(0, t - own - exclude_recent + 1)]  # query frames searchable now
        has_positive[i] = len(positives[i]) > 0 or bool(np.isin(own_positives[i], earlier).any())
        if found is None:
            continue
        best[i], score[i] = found, sign * value if math.isfinite(value) else -np.inf
        if extra <= found < extra + own:
            correct[i] = db_order[found - extra] in positives[i]
        elif found >= extra + own:
            correct[i] = q_order[found - extra - own] in own_positives[i]
    return StreamReplay(best, score, correct & has_positive, has_positive)


def _shortlist(descriptor: np.ndarray, rows: np.ndarray, k: int, plan) -> np.ndarray:
    """The ``k`` nearest of ``rows`` ``(count, D)`` to ``descriptor`` ``(D,)`` by exact L2, nearest first (ties:
    the lower id); −1 where fewer than ``k`` (the sequence step takes ``k`` candidates)."""
    out = np.full(k, -1, np.int64)
    found = exact_search(rows, descriptor[None], k, plan=plan)[1][0]
    out[:len(found)] = found
    return out
