"""Tokyo 24/7 per-panorama scoring against a literal transcription of the official ``nnSearchPostprocess``."""

from __future__ import annotations

import numpy as np

from netvlad.eval.recall import evaluate_descriptors
from netvlad.search.panorama import first_per_group, panorama_ids


def official_nms(ids_1based: np.ndarray, n_top: int) -> np.ndarray:
    """dbTokyo247.m: ``[~, uniqInd] = unique(idivide(ids - 1, 12), 'stable'); ids(uniqInd(1:min(end, nTop)))``."""
    seen, keep = set(), []
    for position, image in enumerate(ids_1based):
        panorama = int(image - 1) // 12  # idivide on non-negative int32: truncation
        if panorama not in seen:
            seen.add(panorama)
            keep.append(position)
    return ids_1based[keep[:n_top]]


def test_first_per_group_equals_the_official_code_on_random_rankings():
    rng = np.random.default_rng(3)
    groups = panorama_ids(120)
    for _ in range(50):
        ranked = rng.permutation(120)[:60][None, :]
        kept, dist = first_per_group(ranked, np.arange(60, dtype=np.float32)[None, :], groups, 5)
        expected = official_nms(ranked[0] + 1, 5) - 1
        np.testing.assert_array_equal(kept[0], expected)
        assert len(set(groups[kept[0]])) == 5  # five distinct panoramas
        np.testing.assert_array_equal(dist[0], [np.flatnonzero(ranked[0] == i)[0] for i in expected])


def test_fewer_panoramas_than_k_pad_with_minus_one():
    kept, dist = first_per_group(np.array([[0, 1, 13, -1]]), np.array([[0.0, 1, 2, np.inf]]), panorama_ids(24), 3)
    assert kept.tolist() == [[0, 13, -1]] and dist[0, 2] == np.inf


def test_recall_counts_distinct_panoramas():
    # 3 panoramas of 12 cut-outs on a line of descriptors: the query's 12 nearest are all panorama 0 (wrong),
    # the 13th is panorama 2 (right), panorama 1 is farthest.
    db = np.zeros((36, 1), np.float32)
    db[:12, 0] = 0.1 + 0.001 * np.arange(12)
    db[12:24, 0] = 5.0
    db[24:, 0] = 0.2 + 0.001 * np.arange(12)
    queries = np.zeros((1, 1), np.float32)
    positives = [np.arange(24, 36)]
    per_image = evaluate_descriptors(db, queries, positives, ns=(1, 2, 12, 13))
    per_panorama = evaluate_descriptors(db, queries, positives, ns=(1, 2, 12, 13), groups=panorama_ids(36))
    assert per_image.recall == {1: 0.0, 2: 0.0, 12: 0.0, 13: 100.0}
    assert per_panorama.recall == {1: 0.0, 2: 100.0, 12: 100.0, 13: 100.0}
    assert per_panorama.ranked[0, :3].tolist() == [0, 24, 12] and (per_panorama.ranked[0, 3:] == -1).all()
