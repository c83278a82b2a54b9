"""The stream's sequence step: the sequence issue's OnlineSeqSLAM over a database that grows while it runs."""

import numpy as np
import pytest

from netvlad.match.seqslam import OnlineSeqSLAM
from netvlad.match.sequence import SequenceConfig
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
    step = StreamSequence(4, 16, map_descriptors=route)
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
