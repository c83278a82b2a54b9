"""Cluster initialisation: descriptors really sampled from the feature maps, seeded k-means, α as the layer defines."""

import numpy as np
import pytest
import torch

from netvlad.data.images import load_image
from netvlad.extract import ClusterConfig, initialize_clusters, sample_local_descriptors
from netvlad.extract.clusters import init_from_descriptors
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.nn import NetVLAD, choose_alpha
from tests.nn.test_netvlad import naive_netvlad


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

    from netvlad.extract.clusters import ClusterConfig, initialize_clusters
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing
    from netvlad.train.cache import ExtractOptions, extract

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
    single = np.stack([extract(model, [p], ExtractOptions(batch_size=1))[0] for p in paths])
    np.testing.assert_allclose(extract(model, paths, ExtractOptions(batch_size=4)), single, atol=1e-5)


@pytest.mark.parametrize("parametrization", ["official", "paper"])
def test_initialised_layers_equal_naive_reference(parametrization):
    layer = NetVLAD(6, 8, parametrization=parametrization).double()
    init_from_descriptors(layer, torch.randn(500, 8))
    tokens = torch.randn(2, 9, 8, dtype=torch.float64)
    bias = layer.conv.bias.detach().numpy() if layer.conv.bias is not None else None
    want = naive_netvlad(tokens.numpy(), layer.conv.weight.detach().view(6, 8).numpy(), bias,
                         layer.centroids.detach().numpy(), True)
    np.testing.assert_allclose(layer(tokens).detach().numpy(), want, rtol=0, atol=1e-10)



@pytest.mark.parametrize("parametrization", ["official", "paper"])
@pytest.mark.parametrize("ratio_average", ["geometric", "arithmetic"])
def test_alpha_gives_mean_ratio_100(parametrization, ratio_average):
    """Geometric (default, the official code): exp(mean log ratio) = 100; arithmetic: mean ratio = 100."""
    layer = NetVLAD(16, 32, parametrization=parametrization)
    descriptors = torch.randn(4000, 32)
    init_from_descriptors(layer, descriptors, seed=3, ratio_average=ratio_average)
    x = torch.nn.functional.normalize(descriptors.double(), dim=1)
    logits = x @ layer.conv.weight.detach().view(16, 32).double().T
    if layer.conv.bias is not None:
        logits = logits + layer.conv.bias.detach().double()
    top2 = torch.softmax(logits, dim=1).topk(2, dim=1).values
    ratios = top2[:, 0] / top2[:, 1]
    ratio = ratios.log().mean().exp().item() if ratio_average == "geometric" else ratios.mean().item()
    assert abs(ratio - 100) / 100 < 0.05



def test_kmeans_init_is_seeded_and_sets_centroids():
    x = torch.randn(2000, 8)
    a, b = NetVLAD(8, 8), NetVLAD(8, 8)
    init_from_descriptors(a, x, seed=1)
    init_from_descriptors(b, x, seed=1)
    torch.testing.assert_close(a.centroids, b.centroids, rtol=0, atol=0)
    # each centroid is (close to) the mean of the normalised descriptors assigned to it
    xn = torch.nn.functional.normalize(x, dim=1)
    assign = torch.cdist(xn, a.centroids.detach()).argmin(1)
    means = torch.stack([xn[assign == k].mean(0) for k in range(8)])
    torch.testing.assert_close(means, a.centroids.detach(), atol=2e-2, rtol=0)



def test_kmeans_needs_k_descriptors():
    with pytest.raises(ValueError, match="at least K=4"):
        init_from_descriptors(NetVLAD(4, 16), torch.randn(3, 16))
