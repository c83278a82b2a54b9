"""Sequence-matching settings and the registry of sequence methods; imports neither numpy nor torch (each method
imports its matcher when it runs), so the CLI lists the choices at once.

A new sequence method is one registration at the end of this module: a function from :class:`SequenceInputs` to
``(ranked, scores)`` decorated with ``@register_sequence_method(name, help)``, its matcher in ``match/<name>.py``.
``netvlad evaluate --sequence-method NAME`` and ``netvlad.eval.sequence.sequence_ranking`` then run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netvlad.errors import BadInputError
from netvlad.limits import Limit
from netvlad.registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from netvlad.data.sequences import SequenceOrder

# The defaults `netvlad benchmark` chose by leave-one-set-out (docs/sequences.md, "Choosing the defaults"): the
# plain trajectory score at one velocity was never more than 1 point below the baseline and had the best worst set.
DEFAULT_METHOD = "diagonal"
DEFAULT_VELOCITIES = (1.0,)  # database frames per query frame

@dataclass(frozen=True)
class StreamScore:
    """A score a frame-by-frame matcher (``netvlad stream``) reports for its best place: which way it points
    (``higher_is_better``) and whether it may be below 0 (``signed``: a threshold on it may be too)."""

    name: str
    higher_is_better: bool = False
    signed: bool = False

    @property
    def direction(self) -> str:
        """``"lower is surer"``, ``"higher is surer, may be negative"``: the end of its help line."""
        return f"{'higher' if self.higher_is_better else 'lower'} is surer{', may be negative' if self.signed else ''}"


# The scores a frame-by-frame matcher (netvlad stream) reports for its best place; the default ranks as
# `netvlad evaluate --sequence` does (a test keeps them equal).
STREAM_SCORES: Registry[StreamScore] = Registry("stream sequence score", "choose one of")


def register_stream_score(name: str, help: str, *, higher_is_better: bool = False, signed: bool = False) -> None:
    """Register stream score ``name``; its help line is ``help`` with the score's direction appended."""
    score = StreamScore(name, higher_is_better, signed)
    STREAM_SCORES.add(name, score, f"{help} ({score.direction})")


def signed_stream_scores() -> list[str]:
    """The stream scores that may be below 0 (a threshold on them may be too), sorted."""
    return [name for name in STREAM_SCORES.names() if STREAM_SCORES.get(name).signed]


register_stream_score("diagonal", "mean squared L2 distance along the best constant-velocity trajectory over the "
                                  "whole map: what `netvlad evaluate --sequence-method diagonal` ranks by")
register_stream_score("distance", "mean L2 distance along the best constant-velocity trajectory, comparable across "
                                  "frames: the loop-closure default")
register_stream_score("seqslam", "SeqSLAM's contrast-normalised score over the frame's shortlist, negated",
                      higher_is_better=True, signed=True)
register_stream_score("diagonal-causal-standardised",
                      "the diagonal score over each map entry's squared distances standardised by their statistics "
                      "over the frames seen since it entered the map: what `netvlad evaluate --sequence-method "
                      "diagonal-causal-standardised` ranks by", signed=True)
DEFAULT_STREAM_SCORE = DEFAULT_METHOD

# Ranges of the settings: beyond them the per-window blocks (shortlist × L × (2R + 1 + spread)) or the (Q, L) window
# arrays would no longer fit in memory, and no route needs them.
LENGTH = Limit(2, 1000, integer=True)  # query frames per sequence
VELOCITY = Limit(-100, 100)  # database frames per query frame
CONTRAST_RADIUS = Limit(1, 10_000, integer=True)  # ± database frames (0 would normalise every distance to 0)
SHORTLIST = Limit(1, 10_000, integer=True)  # database frames scored per query frame
PROPAGATE = Limit(0, 1000, integer=True)  # shortlist entries carried per window frame


@dataclass(frozen=True)
class SequenceConfig:
    """SeqSLAM-style matching: ``length`` L query frames per trajectory, ``velocities`` database frames per query
    frame, local contrast normalisation over ±``contrast_radius`` database frames, ``shortlist`` M database frames
    per query frame scored, plus the top ``propagate`` of each other window frame's shortlist carried along the
    trajectory (0: the current frame's shortlist only), ``centred`` (offline: L//2 frames before and the rest
    after) instead of causal (the L−1 frames before the current one).

    Examples:
        >>> config = SequenceConfig(length=5, centred=True)
        >>> config.before, config.after  # L//2 frames before the current one, the rest after
        (2, 2)
        >>> SequenceConfig(length=1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        netvlad.errors.BadInputError: sequence length must be ... query frames, got 1
    """

    length: int = 10
    velocities: tuple[float, ...] = DEFAULT_VELOCITIES
    contrast_radius: int = 10  # seqslam's settings: its best worst-set family (docs/sequences.md)
    shortlist: int = 20  # measured (docs/sequences.md): as good as 50 at R@1 on Nordland and GP
    centred: bool = False
    propagate: int = 5

    def __post_init__(self) -> None:
        if not LENGTH.accepts(self.length):
            raise BadInputError(f"sequence length must be {LENGTH.describe()} query frames, got {self.length!r}",
                                hint="--sequence 10")
        try:
            object.__setattr__(self, "velocities", tuple(float(v) for v in self.velocities))
        except (TypeError, ValueError):
            raise BadInputError(f"velocities must be numbers, got {self.velocities!r}") from None
        if not self.velocities or not all(VELOCITY.accepts(v) for v in self.velocities):
            raise BadInputError(f"velocities must be {VELOCITY.describe()} database frames per query frame each, "
                                f"got {self.velocities}")
        if self.contrast_radius == 0:
            # ±0 frames: every distance minus its own mean is 0, so every trajectory would tie (single frame)
            raise BadInputError(f"contrast_radius must be ≥ 1 database frame, got {self.contrast_radius}: a radius "
                                "of 0 normalises every distance to 0; for raw, unnormalised distances use the "
                                "diagonal method", hint="--sequence-method diagonal")
        for name, limit in (("contrast_radius", CONTRAST_RADIUS), ("shortlist", SHORTLIST),
                            ("propagate", PROPAGATE)):
            limit.check(name, getattr(self, name))

    @property
    def before(self) -> int:
        """Query frames used before the current one."""
        return self.length // 2 if self.centred else self.length - 1

    @property
    def after(self) -> int:
        """Query frames used after the current one (0 when causal)."""
        return self.length - 1 - self.before

    @property
    def mode(self) -> str:
        """``"centred"`` or ``"causal"``."""
        return "centred" if self.centred else "causal"



def shifted_window(t: int, n: int, before: int, after: int) -> tuple[int, int]:
    """Frames [start, stop) of frame ``t``'s window in a sequence of ``n`` frames: ``before`` frames before it and
    ``after`` after, shifted inside the sequence where it would run past an end, so that it keeps its L frames
    (seqNet's rule, ``getSeqInds``); a sequence shorter than L is one window of all its frames."""
    length = before + after + 1
    if n <= length:
        return 0, n
    start = min(max(0, t - before), n - length)
    return start, start + length


DEFAULT = SequenceConfig()  # L = 10 causal, velocity 1; seqslam: ±10 frames normalisation, shortlist 20 (+5 carried)
DIAGONAL_KEPT = 100  # database frames kept per query by the whole-database ranking (what --verify re-ranks)

# (descriptors (N, D), order, config) -> sequence descriptors (N, D'): Delta, or a trained SeqNet
Encoder = Callable[["np.ndarray", "SequenceOrder | None", SequenceConfig], "np.ndarray"]
# (database (N, D'), queries (Q, D'), k) -> (ranked (Q, k), distances (Q, k)): the caller's global-descriptor search
Search = Callable[["np.ndarray", "np.ndarray", int], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class SequenceInputs:
    """What a sequence method ranks: single-frame descriptors ``queries`` (Q, D) and ``database`` (N, D) in their
    sequence orders, each query's single-frame ``shortlist`` (Q, M) database indices best first, the ``config``,
    ``top`` (the largest N of Recall@N), ``search`` for sequence descriptors, a trained ``encoder`` (SeqNet),
    ``max_memory`` bytes for the whole-database blocks (None: the matcher's default) and ``name`` (the dataset's,
    for messages)."""

    queries: Any
    database: Any
    query_order: Any
    database_order: Any
    shortlist: Any
    config: SequenceConfig
    top: int
    search: Search
    encoder: Encoder | None = None
    max_memory: float | None = None
    name: str = "dataset"


# inputs -> (ranked (Q, M) database indices best first, scores (Q, M) lower is better)
Rank = Callable[[SequenceInputs], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class SequenceMethod:
    """One sequence method: ``rank``, whether its windows are shifted inside the sequence to keep L frames
    (``shifted``, Delta's and SeqNet's descriptor rule) rather than shortened at its ends (the trajectory rule), and
    whether it needs the whole query set at once (``offline``: a frame-by-frame matcher cannot run it, so it cannot
    be the default that ``netvlad stream`` shares)."""

    name: str
    rank: Rank
    shifted: bool = False
    offline: bool = False


METHODS: Registry[SequenceMethod] = Registry("sequence method", "choose one of")


def register_sequence_method(name: str, help: str, *, shifted: bool = False,
                             offline: bool = False) -> Callable[[Rank], Rank]:
    """Decorator registering ``rank`` as sequence method ``name`` (``help``: its one line in ``--help``)."""

    def decorate(rank: Rank) -> Rank:
        METHODS.add(name, SequenceMethod(name, rank, shifted, offline), help)
        return rank

    return decorate


def _diagonal_ranking(inputs: SequenceInputs, standardised: bool = False, seen_only: bool = False):
    """:func:`netvlad.match.diagonal.diagonal_rank` of ``inputs`` (raw, ``standardised`` over every query, or over the
    query frames ``seen_only`` so far) -> (ranked, scores)."""
    from netvlad.match.diagonal import diagonal_rank

    budget = {} if inputs.max_memory is None else {"max_memory": inputs.max_memory}  # whole-database blocks' bytes
    ranking = diagonal_rank(inputs.queries, inputs.database, inputs.query_order, inputs.database_order,
                            inputs.config, k=max(inputs.top, DIAGONAL_KEPT), standardised=standardised,
                            seen_only=seen_only, **budget)
    return ranking.ranked, ranking.scores


@register_sequence_method("diagonal", "raw squared distances summed along constant-velocity trajectories through "
                                      "every database frame (no normalisation, no shortlist; training-free)")
def _diagonal(inputs: SequenceInputs):
    return _diagonal_ranking(inputs)


@register_sequence_method("diagonal-standardised", "the diagonal score over each database frame's squared "
                                                   "distances standardised by their mean and deviation over every "
                                                   "query (offline: needs the whole query set)", offline=True)
def _diagonal_standardised(inputs: SequenceInputs):
    return _diagonal_ranking(inputs, standardised=True)


@register_sequence_method("diagonal-causal-standardised", "the diagonal score over each database frame's squared "
                                                          "distances standardised over the query frames seen so far "
                                                          "(seeded with the frame's own statistics; runs frame by "
                                                          "frame)")
def _diagonal_causal_standardised(inputs: SequenceInputs):
    return _diagonal_ranking(inputs, seen_only=True)


@register_sequence_method("seqslam", "SeqSLAM-style trajectory search over each query frame's shortlist "
                                     "(training-free)")
def _seqslam(inputs: SequenceInputs):
    from netvlad.match.seqslam import seqslam_rank

    ranking = seqslam_rank(inputs.queries, inputs.database, inputs.query_order, inputs.database_order,
                           inputs.shortlist[:, :inputs.config.shortlist], inputs.config)
    return ranking.ranked, ranking.scores


def _sequence_descriptor_search(inputs: SequenceInputs, encode: Encoder, method: str):
    """Encode both sides' windows with ``encode`` and search them like global descriptors: (ranked, distances)."""
    from netvlad.match.delta import check_sequence_descriptors

    seq_db = check_sequence_descriptors(encode(inputs.database, inputs.database_order, inputs.config),
                                        f"{inputs.name} database {method}")
    seq_q = check_sequence_descriptors(encode(inputs.queries, inputs.query_order, inputs.config),
                                       f"{inputs.name} queries {method}")
    return inputs.search(seq_db, seq_q, max(inputs.config.shortlist, inputs.top))


@register_sequence_method("delta", "Delta descriptors: difference of smoothed descriptors over the window, searched "
                                   "like a global descriptor (training-free)", shifted=True)
def _delta(inputs: SequenceInputs):
    from netvlad.match.delta import delta_descriptors

    return _sequence_descriptor_search(inputs, inputs.encoder or delta_descriptors, "delta")


@register_sequence_method("seqnet", "SeqNet sequence descriptor (a trained 1-D temporal convolution) shortlist, "
                                    "then SeqSLAM-style re-ranking (HVPR)")
def _seqnet(inputs: SequenceInputs):
    from netvlad.match.seqslam import seqslam_rank

    if inputs.encoder is None:
        raise BadInputError("sequence method seqnet needs a trained SeqNet model (train one with "
                            "netvlad.train.seqnet.train_seqnet)", hint="--sequence-model SEQNET.safetensors")
    shortlist, _ = _sequence_descriptor_search(inputs, inputs.encoder, "seqnet")
    ranking = seqslam_rank(inputs.queries, inputs.database, inputs.query_order, inputs.database_order, shortlist,
                           inputs.config)  # HVPR: the SeqNet shortlist, re-ranked by SeqSLAM
    return ranking.ranked, ranking.scores
