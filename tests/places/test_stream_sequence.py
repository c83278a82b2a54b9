"""The stream's sequence step: the sequence issue's OnlineSeqSLAM over a database that grows while it runs."""

import numpy as np
import pytest

from netvlad.match.seqslam import OnlineSeqSLAM
from netvlad.match.sequence import STREAM_SCORES, SequenceConfig, signed_stream_scores
from netvlad.places.stream_sequence import GrowingSeqSLAM, StreamSequence


def _walk(n, dim, rng):
    steps = rng.standard_normal((n, dim)).astype(np.float32)
    return np.cumsum(steps, axis=0) / 4


def test_growing_matcher_equals_a_fixed_one_over_the_searchable_entries():
    rng = np.random.default_rng(0)
    full = _walk(80, 16, rng)
    config = SequenceConfig(length=5, shortlist=8)
    growing = GrowingSeqSLAM(16, config)
    history = []
    for t in range(12):
        count, searchable = 50 + t, 44 + t  # the newest six entries are excluded
        query = full[20 + t] + 0.05 * rng.standard_normal(16).astype(np.float32)
        candidates = np.r_[rng.choice(searchable, 7, replace=False), -1]
        history.append((query, candidates))
        got = growing.push_growing(query, candidates, full[:count], searchable)
        reference = OnlineSeqSLAM(full[:searchable].copy(), None, config)
        for q, c in history:
            expected = reference.push(q, c)
        np.testing.assert_array_equal(got.ids, expected.ids)
        np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-6)
        assert (got.ids < searchable).all()


@pytest.mark.parametrize("method", ["diagonal", "distance", "seqslam"])
def test_stream_sequence_finds_the_revisit_and_handles_an_empty_start(method):
    rng = np.random.default_rng(1)
    route = _walk(60, 16, rng)
    step = StreamSequence(5, 16, method=method)
    assert step.push(route[0], np.array([-1, -1]), route[:0], 0) == (None, None)  # nothing to match yet
    for t in range(10, 20):  # revisiting entries 10..19 with noise; a lookalike sits at entry 50
        query = route[t] + 0.1 * rng.standard_normal(16).astype(np.float32)
        database = route.copy()
        database[50] = query + 0.01
        best, score = step.push(query, np.array([50, t, t + 1, t - 1]), database, 60)
    assert best == 19 and score > 0 and step.higher_is_better == (method == "seqslam")


def test_stream_sequence_against_a_map_scores_the_map_rows():
    rng = np.random.default_rng(2)
    route = _walk(40, 16, rng)
    step = StreamSequence(4, 16, map_descriptors=route, method="diagonal")
    for t in range(5, 12):
        best, score = step.push(route[t], np.array([t, 30]))
    assert best == 11 and score == pytest.approx(0.0, abs=1e-3)


def test_stream_and_evaluate_share_the_default_sequence_score(tmp_path):
    """`netvlad stream --sequence` decides on the score `netvlad evaluate --sequence` ranks by, with its defaults."""
    from netvlad.cli.main import build_parser
    from netvlad.match.sequence import DEFAULT, DEFAULT_METHOD, DEFAULT_STREAM_SCORE
    from netvlad.places.stream import StreamConfig

    assert DEFAULT_STREAM_SCORE == DEFAULT_METHOD == StreamConfig().sequence_score
    parser = build_parser()
    evaluate = parser.parse_args(["evaluate", str(tmp_path), "--sequence", "10"])
    stream = parser.parse_args(["stream", str(tmp_path), "--out", str(tmp_path / "s.jsonl"), "--sequence", "10"])
    assert evaluate.sequence_method == stream.sequence_score == DEFAULT_METHOD
    step = StreamSequence(10, 4, map_descriptors=np.eye(4, dtype=np.float32))
    assert step.config == SequenceConfig(length=10) and step.config.velocities == DEFAULT.velocities


def test_stream_sequence_runs_the_causal_standardised_diagonal_and_refuses_offline_methods():
    """`--sequence-score diagonal-causal-standardised`: the stream's step is OnlineDiagonal(seen_only=True) over the
    growing searchable prefix (same ids and scores push by push), finds the revisit past a lookalike; a sequence
    method that cannot run frame by frame is refused with one line naming the stream's choices."""
    from netvlad.errors import BadInputError
    from netvlad.match.diagonal import OnlineDiagonal

    rng = np.random.default_rng(1)
    route = _walk(60, 16, rng)
    step = StreamSequence(5, 16, method="diagonal-causal-standardised")
    reference = OnlineDiagonal(route, None, SequenceConfig(length=5), seen_only=True)
    assert step.push(route[0], np.array([-1]), route[:0], 0) == (None, None)
    reference.push(route[0], count=0, k=1)
    for t in range(10, 20):
        query = route[t] + 0.1 * rng.standard_normal(16).astype(np.float32)
        database = route.copy()
        database[50] = query + 0.01
        reference.database = database
        best, score = step.push(query, np.array([50, t]), database, 30 + t)
        expected = reference.push(query, count=30 + t, k=1)
        assert (best, score) == (int(expected.ranked[0, 0]), pytest.approx(float(expected.scores[0, 0])))
    assert best == 19 and score < 0 and not step.higher_is_better
    for method in ("diagonal-standardised", "delta"):
        with pytest.raises(BadInputError, match="cannot run frame by frame on a stream; choose one of") as error:
            StreamSequence(5, 16, method=method)
        assert "\n" not in str(error.value) and "diagonal-causal-standardised" in str(error.value)


def test_streaming_a_route_with_the_default_score_gives_the_offline_causal_ranking(nordland):
    """A route streamed frame by frame against a map with the default sequence score (no method named) picks, frame
    by frame, the place and score that `netvlad evaluate --sequence 10` ranks first with its default method (Nordland
    winter against summer thumbnails, real photographs)."""
    from netvlad.data.sequences import SequenceOrder
    from netvlad.match.sequence import DEFAULT, DEFAULT_METHOD, METHODS, SequenceInputs
    from tests.match.test_diagonal import thumbnails

    database, queries = thumbnails(nordland, "summer", 60), thumbnails(nordland, "winter", 45)
    order = SequenceOrder(np.zeros(len(queries), np.int64), np.arange(len(queries)))
    ranked, scores = METHODS.get(DEFAULT_METHOD).rank(SequenceInputs(queries, database, order, None, None, DEFAULT,
                                                                     1, None))
    step = StreamSequence(DEFAULT.length, database.shape[1], map_descriptors=database)
    for t, query in enumerate(queries):
        best, score = step.push(query, np.array([-1]))
        assert (best, score) == (int(ranked[t, 0]), pytest.approx(float(scores[t, 0]), rel=1e-4, abs=1e-4)), t
    assert (np.abs(ranked[DEFAULT.length:, 0] - np.arange(DEFAULT.length, len(queries))) <= 1).mean() > 0.5


def test_a_threshold_below_zero_only_for_a_score_that_may_be_negative():
    """A mean standardised distance (a sure match lies below 0): a negative ``threshold`` is accepted with it and
    with SeqSLAM's, refused (one line naming the fix) where it is a distance."""
    from netvlad.errors import BadInputError
    from netvlad.places.stream import StreamConfig

    assert StreamConfig(sequence=10, threshold=-1.3, sequence_score="diagonal-causal-standardised").threshold == -1.3
    assert StreamConfig(sequence=10, threshold=-0.5, sequence_score="seqslam").threshold == -0.5
    for settings in ({}, {"sequence": 10, "sequence_score": "diagonal"}, {"sequence": 5, "sequence_score": "distance"},
                     {"sequence": 10, "threshold_nan": True}):
        threshold = float("nan") if settings.pop("threshold_nan", False) else -1.3
        with pytest.raises(BadInputError, match="must be a number > 0") as error:
            StreamConfig(threshold=threshold, **settings)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", STREAM_SCORES.names())
def test_each_stream_score_reads_its_direction_and_sign_from_its_one_registration(name):
    """Which way a score points and whether it may be below 0 are registered once: the stream step's direction, the
    threshold's sign check and the score's help line all read them."""
    from netvlad.errors import BadInputError
    from netvlad.places.stream import StreamConfig

    score = STREAM_SCORES.get(name)
    assert StreamSequence(5, 4, method=name).higher_is_better == score.higher_is_better
    assert STREAM_SCORES.help(name).endswith(f"({score.direction})")
    assert ("may be negative" in score.direction) == score.signed
    if score.signed:
        assert StreamConfig(sequence=5, threshold=-0.5, sequence_score=name).threshold == -0.5
        return
    with pytest.raises(BadInputError, match="must be a number > 0") as error:
        StreamConfig(sequence=5, threshold=-0.5, sequence_score=name)
    assert error.value.hint.endswith(f"--sequence-score {' or '.join(signed_stream_scores())})")
