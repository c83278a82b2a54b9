"""`netvlad export`: hloc's HDF5 layout read as hloc reads it; ONNX and TorchScript against PyTorch on real photos."""

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from netvlad.cli.main import main
from netvlad.data.images import load_image
from netvlad.extract.clusters import init_from_descriptors
from netvlad.extract.descriptors import extract_descriptors
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
from netvlad.models.export import export_onnx, export_torchscript, hloc_names, onnx_max_difference
from netvlad.nn import PCAWhitening
from tests.conftest import shared_dataset


def _hloc_pairs(path, num_matched):
    """hloc's pairs_from_retrieval, re-implemented: names by visititems, prefixes, dot products, top-k."""
    with h5py.File(path, "r") as f:
        names = []
        f.visititems(lambda _, obj: names.append(obj.parent.name.strip("/")) if isinstance(obj, h5py.Dataset)
                     else None)
        names = sorted(set(names))
        db = [n for n in names if n.startswith("db")]
        queries = [n for n in names if n.startswith("query")]
        d = np.stack([f[n]["global_descriptor"].__array__() for n in db])
        q = np.stack([f[n]["global_descriptor"].__array__() for n in queries])
    top = np.argsort(-(q @ d.T), axis=1)[:, :num_matched]
    return {name: [db[i] for i in row] for name, row in zip(queries, top, strict=True)}


def _pattern(i: int) -> np.ndarray:
    """A distinct 64×64 picture: stripes of period 4 + 4i, in a colour of its own."""
    y, x = np.mgrid[:64, :64]
    stripes = ((x + (i % 2) * y) // (2 + 2 * i)) % 2
    colour = np.array([(50 * i) % 256, 255 - 40 * i, 120], dtype=np.float64)
    return (stripes[..., None] * colour).astype(np.uint8)


def test_hloc_export_is_read_by_hloc_pairs_from_retrieval(tmp_path):
    root = tmp_path / "images"
    names = [f"p{i}.png" for i in range(5)]
    for folder in ("db", "query"):  # the same distinct pictures in both: each query's pair is its copy
        (root / folder).mkdir(parents=True)
        for i, name in enumerate(names):
            Image.fromarray(_pattern(i)).save(root / folder / name)
    model = PlaceModel(ModelConfig(pool="gem", preprocessing=Preprocessing("none")))
    save_model(model, tmp_path / "m.safetensors")
    out = tmp_path / "global-feats.h5"
    assert main(["export", "hloc", str(root), "--model", str(tmp_path / "m.safetensors"), "--out", str(out),
                 "--workers", "0", "--no-progress"]) == 0
    assert hloc_names(out) == [f"db/{n}" for n in names] + [f"query/{n}" for n in names]
    with h5py.File(out, "r") as f:
        assert f["db"][names[2]]["global_descriptor"].shape == (1280,)
        stored = f[f"db/{names[2]}"]["global_descriptor"][()]
    np.testing.assert_allclose(stored, extract_descriptors(model, [root / "db" / names[2]])[0], atol=1e-6)
    pairs = _hloc_pairs(out, 1)
    assert all(pairs[f"query/{n}"] == [f"db/{n}"] for n in names)


@pytest.fixture(scope="module")
def real_model():
    """Offline MobileNetV2 → NetVLAD (K=8, centroids from the photos) → PCA whitening to 4-D, and the photos."""
    tokyo_pair = shared_dataset("tokyo_pair")
    model = PlaceModel(ModelConfig(pool="netvlad", num_clusters=8, preprocessing=Preprocessing("longest", (224,))))
    images = [load_image(tokyo_pair / n, "longest", (224,))[None] for n in ("tokyo_db.png", "tokyo_query.jpg")]
    with torch.no_grad():
        maps = [model.features(im) for im in images]
        init_from_descriptors(model.pool, torch.cat([m.flatten(2)[0].T for m in maps]))
        pooled = torch.cat([model.pool_features(m[..., i:, j:]) for m in maps for i in range(3) for j in range(2)])
        model.set_whitening(PCAWhitening(pooled.shape[1], 4).fit(pooled))
    return model.eval(), images


def test_onnx_matches_pytorch_on_real_photos_at_several_sizes(tmp_path, real_model):
    model, images = real_model
    path = export_onnx(model, tmp_path / "m.onnx", height=96, width=128)
    for image in images:  # 224×168 photos: another size than the one traced
        assert onnx_max_difference(model, path, image) <= 1e-4
    batch = torch.cat([images[0][..., :160, :200], images[1][..., :160, :200]])
    assert onnx_max_difference(model, path, batch) <= 1e-4


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.save/load are deprecated but still supported
def test_torchscript_matches_pytorch(tmp_path, real_model):
    model, images = real_model
    path = export_torchscript(model, tmp_path / "m.pt", height=96, width=128)
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        for image in (images[0], images[1][..., :128, :192]):
            np.testing.assert_allclose(loaded(image).numpy(), model(image).numpy(), atol=1e-5)


def test_cli_onnx_export_with_check(tmp_path, tokyo_pair, capsys):
    model = PlaceModel(ModelConfig(pool="max", preprocessing=Preprocessing("longest", (160,))))
    save_model(model, tmp_path / "m.safetensors")
    assert main(["export", "onnx", "--model", str(tmp_path / "m.safetensors"), "--out", str(tmp_path / "m.onnx"),
                 "--height", "96", "--width", "128", "--check", str(tokyo_pair / "tokyo_query.jpg")]) == 0
    text = capsys.readouterr().out
    difference = float(text.rsplit(":", 1)[1])
    assert difference <= 1e-4
