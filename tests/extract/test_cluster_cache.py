"""Cached k-means centroids of an off-the-shelf NetVLAD: reused on the same images, recomputed when an image changes
or the entry is damaged; small images get one line saying how to upsample them instead of faiss's warning."""

import logging
import shutil

import pytest
import torch

from netvlad.extract import clusters
from netvlad.extract.clusters import ClusterConfig, cluster_if_off_the_shelf, sampled_images
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from tests.conftest import shared_dataset

CONFIG = ClusterConfig(num_descriptors=300, per_image=20, num_images=10, niter=5)

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(size=(64, 96), resize="fixed", k=4) -> PlaceModel:
    torch.manual_seed(0)  # equal random backbones
    config = ModelConfig(num_clusters=k, preprocessing=Preprocessing(resize, size))
    return PlaceModel(config, pretrained=False).eval()


@pytest.fixture
def images(tmp_path):
    """12 real Gardens Point photographs in a folder of the test's own."""
    source = shared_dataset("gardens_point") / "day_left"
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        shutil.copy(source / f"Image{i * 15:03d}.jpg", folder / f"Image{i * 15:03d}.jpg")
    return sorted(folder.iterdir())


@pytest.fixture
def kmeans_calls(monkeypatch):
    """The k-means runs of the test (the real faiss k-means, counted)."""
    calls = []
    real = clusters.kmeans

    def counted(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(clusters, "kmeans", counted)
    return calls


def _pool(model):
    return {name: t.clone() for name, t in model.pool.state_dict().items()}


def test_second_call_reuses_the_centroids_bit_for_bit(images, tmp_path, kmeans_calls, caplog):
    cache = tmp_path / "cache"
    first = _model()
    with caplog.at_level(logging.INFO, logger="netvlad.extract.clusters"):
        assert cluster_if_off_the_shelf(first, images, CONFIG, cache=cache)
    assert len(kmeans_calls) == 1 and len(list(cache.glob("*.safetensors"))) == 1
    assert "cached the k-means centroids" in caplog.text
    caplog.clear()
    second = _model()
    with caplog.at_level(logging.INFO, logger="netvlad.extract.clusters"):
        assert cluster_if_off_the_shelf(second, images, CONFIG, cache=cache)
    assert len(kmeans_calls) == 1  # no second k-means
    assert "reused the cached k-means centroids" in caplog.text and "`netvlad cluster`" in caplog.text
    assert "clustering local descriptors" not in caplog.text
    for name, tensor in _pool(first).items():
        assert torch.equal(tensor, second.pool.state_dict()[name]), name
    assert second.pool.clustered and second.pool.alpha == first.pool.alpha
    # another K, input size or seed is another entry
    assert cluster_if_off_the_shelf(_model(k=8), images, CONFIG, cache=cache)
    assert cluster_if_off_the_shelf(_model(size=(64, 64)), images, CONFIG, cache=cache)
    assert cluster_if_off_the_shelf(_model(), images, ClusterConfig(**{**CONFIG.__dict__, "seed": 1}), cache=cache)
    assert len(kmeans_calls) == 4 and len(list(cache.glob("*.safetensors"))) == 4
    assert cluster_if_off_the_shelf(_model(), images, CONFIG, cache=False) and len(kmeans_calls) == 5


def test_a_changed_image_is_clustered_again(images, tmp_path, kmeans_calls):
    cache = tmp_path / "cache"
    cluster_if_off_the_shelf(_model(), images, CONFIG, cache=cache)
    changed = sampled_images(images, CONFIG)[3]
    changed.write_bytes((shared_dataset("gardens_point") / "day_right" / "Image100.jpg").read_bytes())
    cluster_if_off_the_shelf(_model(), images, CONFIG, cache=cache)
    assert len(kmeans_calls) == 2


@pytest.mark.parametrize("where", ["data", "header"])
def test_a_flipped_byte_in_the_cache_is_detected_and_recomputed(images, tmp_path, kmeans_calls, caplog, where):
    cache = tmp_path / "cache"
    first = _model()
    cluster_if_off_the_shelf(first, images, CONFIG, cache=cache)
    (entry,) = cache.glob("*.safetensors")
    raw = bytearray(entry.read_bytes())
    header = int.from_bytes(raw[:8], "little")
    at = {"data": len(raw) - 5, "header": raw.index(b'"alpha":"') + 10}[where]  # a centroid value; α's digits
    raw[at] ^= 0x01
    entry.write_bytes(bytes(raw))
    assert at > 8 + header if where == "data" else at < 8 + header
    second = _model()
    with caplog.at_level(logging.INFO):
        cluster_if_off_the_shelf(second, images, CONFIG, cache=cache)
    assert len(kmeans_calls) == 2 and "are unusable" in caplog.text and "clustering again" in caplog.text
    for name, tensor in _pool(first).items():  # the recomputed centroids, rewritten for the next run
        assert torch.equal(tensor, second.pool.state_dict()[name]), name
    cluster_if_off_the_shelf(_model(), images, CONFIG, cache=cache)
    assert len(kmeans_calls) == 2


def test_small_images_get_one_line_instead_of_faiss_warning(tmp_path, capfd, caplog):
    source = shared_dataset("nordland") / "summer"
    paths = sorted(source.iterdir())[:40]  # 64×32 thumbnails: a 2×1 feature map each at their own size
    model = _model(size=(640,), resize="longest", k=16)
    with caplog.at_level(logging.WARNING):
        cluster_if_off_the_shelf(model, paths, ClusterConfig(num_images=40, niter=5), cache=tmp_path / "c")
    (line,) = [r.getMessage() for r in caplog.records if "k-means of" in r.getMessage()]
    assert "k-means of 80 local descriptors into K=16 clusters (5 per cluster, fewer than 39)" in line
    assert "64×32 pixels give about 2 feature positions each" in line and "--resize fixed --size 128 256" in line
    assert "WARNING clustering" not in capfd.readouterr().err  # faiss's own warning stays out
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # reused centroids are as poorly placed: said again
        cluster_if_off_the_shelf(_model(size=(640,), resize="longest", k=16), paths,
                                 ClusterConfig(num_images=40, niter=5), cache=tmp_path / "c")
    assert [r.getMessage() for r in caplog.records if "k-means of" in r.getMessage()] == [line]


def test_the_hint_names_the_size_the_model_sees(images, tmp_path, caplog):
    """960×540 photos resized to a fixed 32×64: the hint upsamples the model's input, not the file."""
    with caplog.at_level(logging.WARNING):
        cluster_if_off_the_shelf(_model(size=(32, 64), k=16), images, CONFIG, cache=tmp_path / "c")
    (line,) = [r.getMessage() for r in caplog.records if "k-means of" in r.getMessage()]
    assert "64×32 pixels give about 2 feature positions each" in line and "--resize fixed --size 128 256" in line


@pytest.mark.parametrize("topic", ["/camera/compressed", "/camera/raw"])
def test_bag_images_are_decoded_once_each_and_keyed_by_their_messages(images, tmp_path, kmeans_calls, monkeypatch,
                                                                      topic):
    from netvlad.data.bags import images as bag_images
    from netvlad.data.bags.images import image_name
    from tests.data.bags.helpers import image_stamp, write_run

    decoded = []
    real = bag_images.message_image

    def counted(msg, msgtype, where):
        decoded.append(where)
        return real(msg, msgtype, where)

    monkeypatch.setattr(bag_images, "message_image", counted)
    size = (128, 192)  # enough local descriptors per centroid: no small-image warning (it opens one image more)
    bag = write_run(tmp_path / "run.bag", images)
    paths = [bag / image_name(topic, image_stamp(i)) for i in range(len(images))]
    cache = tmp_path / "cache"
    assert cluster_if_off_the_shelf(_model(size), paths, CONFIG, cache=cache) and len(kmeans_calls) == 1
    sampled = sampled_images(paths, CONFIG)
    assert sorted(decoded) == sorted(set(decoded)) and len(decoded) == len(sampled)  # once each, for its descriptors
    decoded.clear()
    assert cluster_if_off_the_shelf(_model(size), paths, CONFIG, cache=cache) and len(kmeans_calls) == 1
    assert decoded == []  # the cached centroids, found without decoding an image
    # another bag whose frames differ is another entry
    other = write_run(tmp_path / "other.bag", images[::-1])
    assert cluster_if_off_the_shelf(_model(size), [other / p.relative_to(bag) for p in paths], CONFIG, cache=cache)
    assert len(kmeans_calls) == 2
