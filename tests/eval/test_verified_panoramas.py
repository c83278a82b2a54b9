"""Re-ranked Recall@N on a panorama database (Tokyo 24/7) counts one result per panorama, as the global one does."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.eval.verified import evaluate_verified
from netvlad.extract.store import DescriptorStore
from netvlad.match.verify.panoramas import one_per_panorama, panorama_groups
from netvlad.match.verify.presets import get_preset
from netvlad.match.verify.run import VerifiedRanking


def _dataset(tmp_path, panoramas: bool) -> GeoDataset:
    """3 panoramas of 2 cut-outs each (images 0-1, 2-3, 4-5) and one query."""
    db = ImageList(tmp_path / "db", tuple(f"c{i}.png" for i in range(6)), np.zeros((6, 2)),
                   panoramas=np.array([0, 0, 1, 1, 2, 2], dtype=np.int64) if panoramas else None)
    queries = ImageList(tmp_path / "q", ("q.png",), np.zeros((1, 2)))
    return GeoDataset("tiny-tokyo", db, queries)


def _stores(folder) -> None:
    """Global descriptors whose nearest order from the query is images 0, 1, 2, 3, 4, 5."""
    db = DescriptorStore.create(folder / "database", [f"c{i}.png" for i in range(6)], 1)
    db.write(np.arange(6), np.arange(1, 7, dtype=np.float32)[:, None])
    DescriptorStore.create(folder / "queries", ["q.png"], 1).write(np.array([0]), np.zeros((1, 1), np.float32))


def test_reranked_recall_counts_one_result_per_panorama(tmp_path, monkeypatch):
    _stores(tmp_path / "s")
    seen = {}

    def rerank(extractor, root, names, paths, ranked, distances, top, store_dir, device, query_folder):
        seen["ranked"] = ranked.copy()  # the global top 6 images, not panoramas, are re-ranked
        order = np.array([[0, 1, 4, 2, 3, 5]])  # two cut-outs of panorama 0 first, then the true panorama 2
        return VerifiedRanking(order, np.linspace(1, 0, 6)[None], 0, np.zeros(1), 0)

    monkeypatch.setattr("netvlad.eval.verified.verify_folders", rerank)
    positives = [np.array([4, 5])]  # the query is at panorama 2
    extractor = SimpleNamespace(preset=get_preset("speed"))  # what evaluate_verified reads of it; patches: rerank
    grouped = evaluate_verified(extractor, _dataset(tmp_path, True), positives, tmp_path / "s", top=6, ns=(1, 2, 3))
    assert seen["ranked"].tolist() == [[0, 1, 2, 3, 4, 5]]
    # per panorama: re-ranked 0, 4, 2 (R@2 hit), global 0, 2, 4 (R@3 hit)
    assert grouped.ranking.ranked.tolist() == [[0, 4, 2, -1, -1, -1]]
    assert grouped.recall == {1: 0.0, 2: 100.0, 3: 100.0}
    assert grouped.global_recall == {1: 0.0, 2: 0.0, 3: 100.0}
    assert grouped.global_ranked.tolist() == [[0, 2, 4, -1, -1, -1]]
    # the same ranking per image: the second cut-out of panorama 0 pushes panorama 2 to rank 3
    plain = evaluate_verified(extractor, _dataset(tmp_path, False), positives, tmp_path / "s", top=6, ns=(1, 2, 3))
    assert plain.recall == {1: 0.0, 2: 0.0, 3: 100.0} and plain.global_recall == {1: 0.0, 2: 0.0, 3: 0.0}


def test_panorama_ids_come_from_one_place(tmp_path):
    assert panorama_groups(_dataset(tmp_path, False)) is None
    assert panorama_groups(_dataset(tmp_path, True)).tolist() == [0, 0, 1, 1, 2, 2]
    assert panorama_groups(SimpleNamespace(database=SimpleNamespace(panoramas=np.array([5, 5, 7])))).tolist() == [
        5, 5, 7]
    ranked, scores = one_per_panorama(np.array([[1, 0, 2]]), np.array([[0.9, 0.8, 0.1]]), np.array([0, 0, 1]))
    assert ranked.tolist() == [[1, 2, -1]] and scores[0, :2].tolist() == [np.float32(0.9), np.float32(0.1)]
