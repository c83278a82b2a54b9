"""The descriptor cache: float16 by default, memory-mapped when over the size limit, equal to direct extraction."""

import numpy as np

from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.train.cache import ExtractOptions, build_cache, extract
from netvlad.train.distributed import DistInfo
from netvlad.train.frozen import compute_frozen


def _model():
    config = ModelConfig(num_clusters=4, preprocessing=Preprocessing(resize="fixed", size=(64, 64)))
    return PlaceModel(config, pretrained=False).eval()


def test_cache_in_memory_and_memory_mapped(tiny_dataset, tmp_path):
    model, paths = _model(), tiny_dataset.database.paths()[:5]
    direct = extract(model, paths, ExtractOptions(batch_size=2))
    assert np.allclose(np.linalg.norm(direct, axis=1), 1.0, atol=1e-5)
    small = build_cache(model, paths, DistInfo(), ExtractOptions(batch_size=2), "float16", tmp_path / "c",
                        memmap_mb=1024)
    assert small.dtype == np.float16 and not isinstance(small, np.memmap)
    assert np.abs(small.astype(np.float32) - direct).max() < 1e-3  # float16 rounding only
    mapped = build_cache(model, paths, DistInfo(), ExtractOptions(batch_size=3), "float32", tmp_path / "c",
                         memmap_mb=0.0)
    assert isinstance(mapped, np.memmap) and (tmp_path / "c.npy").is_file()  # one file, shared by all ranks
    assert np.allclose(mapped, direct, atol=1e-5)


def test_frozen_features_give_the_same_descriptors(tiny_dataset):
    model, paths = _model(), tiny_dataset.queries.paths()[:4]
    frozen = compute_frozen(model, paths, DistInfo(), batch_size=3)
    assert frozen.array.shape[0] == 4 and paths[0] in frozen
    assert np.allclose(extract(model, paths, ExtractOptions(frozen=frozen)), extract(model, paths), atol=1e-5)
    model.config = ModelConfig(preprocessing=Preprocessing(resize="longest", size=(64,)))
    assert compute_frozen(model, paths, DistInfo()) is None  # varying sizes: run the whole backbone
