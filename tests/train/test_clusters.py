"""Cluster initialisation: descriptors really sampled from the feature maps, seeded, α as the layer defines."""

import numpy as np
import pytest
import torch

from netvlad.data.images import load_image
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.nn import choose_alpha
from netvlad.train import ClusterConfig, initialize_clusters, sample_local_descriptors


def _model(pool="netvlad"):
    torch.manual_seed(0)  # equal random backbones
    config = ModelConfig(backbone="mobilenet_v2", pool=pool, num_clusters=4,
                         preprocessing=Preprocessing(resize="fixed", size=(64, 96)))
    return PlaceModel(config, pretrained=False).eval()


def test_samples_are_rows_of_the_feature_maps(tiny_dataset):
    model, paths = _model(), tiny_dataset.database.paths()[:5]
    config = ClusterConfig(num_descriptors=12, per_image=4, num_images=5, seed=1)
    sample = sample_local_descriptors(model, paths, config)
    assert sample.shape == (12, 1280)  # 5 images × min(4, 2·3 positions) = 20, capped at 12
    with torch.no_grad():
        maps = torch.cat([model.features(load_image(p, "fixed", (64, 96))[None]).flatten(2)[0].T for p in paths])
    nearest = torch.cdist(sample, maps).min(dim=1).values
    assert nearest.max().item() < 1e-4  # every sample is one of the images' local descriptors
    assert torch.equal(sample, sample_local_descriptors(model, paths, config))  # seeded


def test_initialize_clusters_sets_centroids_and_alpha(tiny_dataset):
    model = _model()
    config = ClusterConfig(num_descriptors=200, per_image=6, num_images=12, seed=0, niter=20)
    alpha = initialize_clusters(model, tiny_dataset.database.paths(), config)
    sample = torch.nn.functional.normalize(sample_local_descriptors(model, tiny_dataset.database.paths(), config))
    layer = model.pool
    assert alpha == pytest.approx(layer.alpha) and alpha > 0
    # each centroid is a mean of samples: it lies in their span and near them
    assert torch.cdist(layer.centroids.detach().float(), sample).min(dim=1).values.max() < 1.0
    scores = sample.double() @ torch.nn.functional.normalize(layer.centroids.detach().double(), dim=1).T
    top = scores.topk(2, dim=1).values
    assert alpha == pytest.approx(choose_alpha(top[:, 0] - top[:, 1]), rel=1e-6)
    again = _model()
    assert initialize_clusters(again, tiny_dataset.database.paths(), config) == pytest.approx(alpha)
    assert torch.equal(again.pool.centroids, layer.centroids)


def test_errors():
    with pytest.raises(ValueError, match="NetVLAD model"):
        initialize_clusters(_model("gem"), ["x.png"])
    with pytest.raises(ValueError, match="needs training images"):
        sample_local_descriptors(_model(), [])
    with pytest.raises(ValueError, match="per_image"):
        ClusterConfig(per_image=0)
    assert np.isclose(ClusterConfig().num_descriptors / ClusterConfig().per_image, ClusterConfig().num_images)


def test_mixed_image_sizes_are_clustered_and_cached(tmp_path):
    """Under the "longest" policy portrait and landscape photos differ in size: both steps group them by size."""
    import numpy as np
    from PIL import Image

    from netvlad.models import ModelConfig, PlaceModel, Preprocessing
    from netvlad.train.cache import extract
    from netvlad.train.clusters import ClusterConfig, initialize_clusters

    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(96, 64), (64, 96), (96, 64), (80, 80)]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    model = PlaceModel(ModelConfig(pool="netvlad", num_clusters=2, preprocessing=Preprocessing("longest", (96,))),
                       pretrained=False)
    alpha = initialize_clusters(model, paths, ClusterConfig(per_image=4, num_images=4), batch_size=4)
    assert alpha > 0
    single = np.stack([extract(model, [p], batch_size=1)[0] for p in paths])
    np.testing.assert_allclose(extract(model, paths, batch_size=4), single, atol=1e-5)
