"""Patch matching: mutual nearest neighbours, RANSAC on synthetic correspondences, rapid scoring by hand and
against Patch-NetVLAD's formula on real Gardens Point patches."""

import numpy as np
import torch

from netvlad.match.verify.matching import mutual_nearest, patch_positions, ransac_inliers, rapid_scores


def test_mutual_nearest_keeps_only_pairs_that_choose_each_other():
    query = torch.eye(3)
    # candidate 0: patches equal to query 0, 1 and a copy nearer to query 1 than patch 1 is -> 1 is not mutual
    cand = torch.tensor([[[1.0, 0, 0], [0.6, 0.8, 0], [0, 1.0, 0]]])
    partner, mutual = mutual_nearest(query, cand)
    assert partner[0].tolist()[:2] == [0, 2] and mutual[0].tolist() == [True, True, False]
    valid = torch.tensor([[True, True, False]])  # the padding patch cannot match
    partner, mutual = mutual_nearest(query, cand, valid)
    assert partner[0, 1] == 1 and mutual[0].tolist() == [True, True, False]



def _mutual_by_loops(query: np.ndarray, candidate: np.ndarray, count: int) -> tuple[list[int], list[bool]]:
    """Mutual nearest neighbours of one candidate's first ``count`` patches, pair by pair, first maximum on ties."""
    sims = [[float(np.dot(candidate[j], query[i])) for j in range(count)] for i in range(len(query))]
    partner = [max(range(count), key=lambda j, i=i: (sims[i][j], -j)) for i in range(len(query))]
    back = [max(range(len(query)), key=lambda i, j=j: (sims[i][j], -i)) for j in range(count)]
    return partner, [back[partner[i]] == i for i in range(len(query))]


def test_mutual_nearest_equals_pairwise_loops_with_ties_and_padding():
    torch.manual_seed(8)
    query = torch.nn.functional.normalize(torch.randn(7, 4), dim=1)
    cands = torch.nn.functional.normalize(torch.randn(5, 9, 4), dim=1)
    cands[1, 3] = cands[1, 5]  # two equal candidate patches: the first is the partner
    cands[2, :2] = query[4]  # two candidate patches equal to one query patch
    counts = torch.tensor([9, 9, 9, 6, 0])  # the last rows of candidates 3 and 4 are padding
    cands[3, 6:] = query[:3]  # padding equal to query patches must not match
    valid = torch.arange(9)[None] < counts[:, None]
    for given in (valid, torch.ones_like(valid)):  # padded, and every row a patch
        partner, mutual = mutual_nearest(query, cands, given)
        for c in range(5):
            count = int(given[c].sum())
            if not count:
                assert not mutual[c].any()
                continue
            expected_partner, expected_mutual = _mutual_by_loops(query.numpy(), cands[c].numpy(), count)
            assert partner[c].tolist() == expected_partner and mutual[c].tolist() == expected_mutual


def test_mutual_nearest_with_no_patches_on_one_side_matches_nothing():
    """A window size larger than a small image's feature map leaves no patches: zero matches, not an error."""
    query, cands = torch.eye(3), torch.eye(3)[None].repeat(2, 1, 1)
    partner, mutual = mutual_nearest(query, cands[:, :0])  # every candidate without patches
    assert partner.shape == (2, 3) and not mutual.any()
    partner, mutual = mutual_nearest(query[:0], cands)  # the query without patches
    assert partner.shape == (2, 0) and mutual.shape == (2, 0)

def test_ransac_counts_the_known_inliers_of_a_homography():
    gen = torch.Generator().manual_seed(0)
    h = torch.tensor([[1.05, 0.08, 2.0], [-0.05, 0.97, -1.0], [0.002, -0.001, 1.0]], dtype=torch.float64)
    src = torch.rand(3, 60, 2, generator=gen, dtype=torch.float64) * 30
    ones = torch.ones(3, 60, 1, dtype=torch.float64)
    proj = torch.cat([src, ones], -1) @ h.T
    dst = proj[..., :2] / proj[..., 2:] + 0.1 * (torch.rand(3, 60, 2, generator=gen, dtype=torch.float64) - 0.5)
    truth = torch.zeros(3, 60, dtype=torch.bool)
    truth[0, :45], truth[1, :20], truth[2, :3] = True, True, True  # 75 %, 33 %, no model
    outliers = torch.rand(3, 60, 2, generator=gen, dtype=torch.float64) * 30 + 10  # far off the homography
    dst = torch.where(truth[..., None], dst, dst + outliers)
    mask = torch.ones(3, 60, dtype=torch.bool)
    mask[1, 50:] = False  # padding rows are never counted
    found = ransac_inliers(src, dst, mask, threshold=1.0, hypotheses=400, generator=gen)
    assert found.tolist()[:2] == [45, 20]
    assert found[2] <= 6  # any 4 points fit themselves; a few more by chance, far from a real place


def test_rapid_score_matches_a_hand_computed_example():
    # query grid 2 rows × 3 cols: (x, y) indices; x_max = 2, y_max = 1
    query_xy = torch.tensor([[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]], dtype=torch.float64)
    partner = torch.tensor([[1, 2, 0, 4, 5, 3]])
    mutual = torch.tensor([[True, True, False, True, False, False]])
    # matches: q0->c1 d=(1,0); q1->c2 d=(1,0); q3->c4 d=(1,0) ... make one off: change q3 -> c5, d=(2,0)
    partner[0, 3] = 5
    # d = (1,0), (1,0), (2,0); mean (4/3, 0); |d−mean| = (1/3, 1/3, 2/3), 0
    # s = (2−1/3)²+1 + (2−1/3)²+1 + (2−2/3)²+1 = 25/9+25/9+16/9+3 = 66/9+3; divided by 6 query patches
    expected = (66 / 9 + 3) / 6
    score = rapid_scores(query_xy, query_xy, partner, mutual)
    torch.testing.assert_close(score, torch.tensor([expected], dtype=torch.float64))
    none = rapid_scores(query_xy, query_xy, partner, torch.zeros_like(mutual))
    assert none.item() == 0.0


def patch_netvlad_rapid_score(query: np.ndarray, candidate: np.ndarray, grid: tuple[int, int]) -> float:
    """Patch-NetVLAD's compare_two_spatial written out (larger is better): mutual nearest neighbours by descriptor
    distance, grid displacements of the matches, Σ (x_max − |d_x − d̄_x|)² + (y_max − |d_y − d̄_y|)² per query patch."""
    rows, cols = grid
    index = np.stack([np.tile(np.arange(cols), rows), np.repeat(np.arange(rows), cols)])  # (2, n): x, y
    dist = np.sqrt(np.maximum(2 - 2 * query @ candidate.T, 0) + 1e-9)
    forward, backward = dist.argmin(1), dist.argmin(0)
    mutual = np.flatnonzero(backward[forward] == np.arange(len(query)))
    if not len(mutual):
        return 0.0
    shift = index[:, forward[mutual]] - index[:, mutual]
    residual = np.abs(shift - shift.mean(1, keepdims=True))
    score = (index[0].max() - residual[0]) ** 2 + (index[1].max() - residual[1]) ** 2
    return float(score.sum() / len(query))


def test_rapid_scores_of_real_patches_equal_patch_netvlads(gardens_point_maps):
    from netvlad.nn.patch import patch_netvlad, window_grid

    maps, layer = gardens_point_maps
    weight = layer.conv.weight.view(layer.num_clusters, layer.dim)
    with torch.no_grad():
        patches = patch_netvlad(maps, weight, layer.conv.bias, layer.centroids, size=2).double()
    grid = window_grid(maps.shape[2], maps.shape[3], 2, 1)
    partner, mutual = mutual_nearest(patches[0], patches[1:])
    xy = patch_positions(*grid)
    ours = rapid_scores(xy, xy, partner, mutual).numpy()
    reference = [patch_netvlad_rapid_score(patches[0].numpy(), c.numpy(), grid) for c in patches[1:]]
    np.testing.assert_allclose(ours, reference, rtol=1e-12)
    assert ours[0] > ours[2] and ours[1] > ours[2]  # nearby places (Image046, Image050) above a far one (120)
