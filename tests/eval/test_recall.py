import numpy as np
import pytest

from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.eval.recall import evaluate, evaluate_descriptors
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from tests.extract.conftest import write_images


def test_evaluate_descriptors_against_hand_computed_ranking():
    db = np.array([[0, 0], [1, 0], [0, 2], [3, 3]], dtype=np.float32)
    queries = np.array([[0.9, 0.1], [0, 1.6], [2.8, 3.1]], dtype=np.float32)
    positives = [np.array([0]), np.array([2]), np.array([], dtype=np.int64)]
    result = evaluate_descriptors(db, queries, positives, ns=(1, 2, 3))
    # Query 0: nearest is 1 (d=0.141), then 0 (0.906); query 1: 2 (0.4), then 0 (1.6); query 2: only 3 is near.
    np.testing.assert_array_equal(result.ranked[:, :2], [[1, 0], [2, 0], [3, 2]])
    np.testing.assert_allclose(result.distances[0, :2], [np.hypot(0.1, 0.1), np.hypot(0.9, 0.1)], rtol=1e-5)
    assert result.recall == {1: pytest.approx(100 / 3), 2: pytest.approx(200 / 3), 3: pytest.approx(200 / 3)}
    np.testing.assert_array_equal(result.correct[:, :2], [[False, True], [True, False], [False, False]])
    summary = result.summary("m")
    assert set(summary) >= {"recall", "num_queries", "num_database", "descriptor_dim", "model"}
    assert summary["recall"]["1"] == pytest.approx(33.3333, abs=1e-3) and summary["queries_without_positive"] == 1


def test_invalid_rows_are_excluded_and_count_as_failures():
    db = np.eye(3, dtype=np.float32)
    queries = np.eye(3, dtype=np.float32)
    result = evaluate_descriptors(db, queries, [np.array([i]) for i in range(3)], ns=(1,),
                                  db_valid=np.array([True, False, True]), query_valid=np.array([True, True, False]))
    assert result.ranked[0, 0] == 0 and result.ranked[1, 0] != 1 and (result.ranked[2] == -1).all()
    assert result.recall[1] == pytest.approx(100 / 3)


def test_dim_mismatch_is_clear():
    with pytest.raises(ValueError, match="same dim"):
        evaluate_descriptors(np.zeros((3, 4)), np.zeros((2, 5)), [np.array([0])] * 2)


def test_evaluate_identical_folders_is_perfect_and_resumable(tmp_path):
    names = write_images(tmp_path / "db", 6, size=(40, 30))
    images = ImageList(tmp_path / "db", tuple(names), np.zeros((6, 2)), frames=np.arange(6))
    dataset = GeoDataset("same", images, images, frame_tolerance=0)
    model = PlaceModel(ModelConfig(pool="max", preprocessing=Preprocessing("none")), pretrained=False)
    first = evaluate(model, dataset, ns=(1, 3), store_dir=tmp_path / "store")
    again = evaluate(model, dataset, ns=(1, 3), store_dir=tmp_path / "store")
    assert first.recall == {1: 100.0, 3: 100.0} and first.descriptor_dim == 1280
    np.testing.assert_array_equal(first.ranked[:, 0], np.arange(6))
    np.testing.assert_array_equal(first.ranked, again.ranked)
    assert (tmp_path / "store" / "database" / "descriptors.npy").is_file()


@pytest.mark.slow
def test_gardens_point_offline_mobilenet_max(gardens_point):
    """A real day-left/day-right check at small size on every 4th place (±2 frames)."""
    frames = np.arange(0, 200, 4)
    names = tuple(f"Image{i:03d}.jpg" for i in frames)

    def side(name):
        return ImageList(gardens_point / name, names, np.zeros((len(names), 2)), frames=frames)

    dataset = GeoDataset("gardens_point", side("day_left"), side("day_right"), frame_tolerance=2)
    model = PlaceModel(ModelConfig(pool="max", preprocessing=Preprocessing("longest", (160,))))
    result = evaluate(model, dataset, ns=(1, 5), batch_size=25)
    chance = 100 * 1 / len(frames)  # ±2 frames on a grid of 4 leaves one positive per query
    assert result.recall[1] > 10 * chance and result.recall[5] >= result.recall[1]


def test_ivfpq_evaluation_agrees_with_exact_on_separated_places():
    from netvlad.search.index import IndexConfig

    rng = np.random.default_rng(1)
    db = rng.normal(size=(512, 64)).astype(np.float32)
    queries = db[::8] + 0.02 * rng.normal(size=(64, 64)).astype(np.float32)
    positives = [np.array([i]) for i in range(0, 512, 8)]
    exact = evaluate_descriptors(db, queries, positives, ns=(1, 5))
    approx = evaluate_descriptors(db, queries, positives, ns=(1, 5),
                                  index_config=IndexConfig(kind="ivfpq", nlist=8, m=16, nbits=6, nprobe=8))
    assert exact.recall == {1: 100.0, 5: 100.0} and approx.recall[5] >= 95.0
