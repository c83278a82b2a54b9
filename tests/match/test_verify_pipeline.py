"""The one pass of spatial verification with its stages overlapped: decoding ahead, the patch projection and the
store writes behind the backbone — the same stores as one thread doing everything in turn, failures raised in the
caller with every row before them kept — through torch, and through onnxruntime on one thread or in two lanes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from netvlad.data.images import ImageDecodeError
from netvlad.errors import BadInputError
from netvlad.extract.descriptors import extract_descriptors
from netvlad.extract.engine import EngineConfig
from netvlad.extract.store import DescriptorStore
from netvlad.match.verify.patch_store import PatchStore
from netvlad.match.verify.patches import PatchExtractor
from netvlad.match.verify.presets import VerifyPreset
from netvlad.match.verify.run import extract_with_patches
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.nn import PCAWhitening
from tests.extract.conftest import write_images

PRESET = VerifyPreset("tiny-rapid", "test", sizes=(2, 3), dim=16, scorer="rapid")
# the backbone pass: torch's traced graph, onnxruntime's export with the feature maps on one thread in the calling
# thread, and in two lanes (each image decoded and run by its own thread through a one-thread session)
ENGINES = {"torch": "torch", "onnxruntime": EngineConfig("onnxruntime", threads=1),
           "lanes": EngineConfig("onnxruntime", threads=2)}


@pytest.fixture
def extractor() -> PatchExtractor:
    torch.manual_seed(0)
    model = PlaceModel(ModelConfig(num_clusters=4, preprocessing=Preprocessing("none")), pretrained=False).eval()
    whitening = PCAWhitening(model.pool.output_dim, 16)
    with torch.no_grad():
        whitening.linear.weight.normal_()
        whitening.linear.bias.normal_()
    return PatchExtractor(model, PRESET, whitening)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_pass(extractor, root, names, out: Path, ahead: int, engine="torch"):
    return extract_with_patches(extractor, root, names, out / "database", out / "patches", batch_size=2, ahead=ahead,
                                engine=ENGINES[engine])


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_pipelined_stores_are_byte_identical_to_one_thread_in_turn(extractor, tmp_path, engine):
    names = write_images(tmp_path / "images", 7, size=(160, 128))  # 4 batches of 2: more than the 2 behind
    for ahead, out in ((0, tmp_path / "sequential"), (2, tmp_path / "pipelined"), (1, tmp_path / "one-behind")):
        _one_pass(extractor, tmp_path / "images", names, out, ahead, engine)
    sequential = _files(tmp_path / "sequential")
    assert {"database/descriptors.npy", "patches/size_2/descriptors.npy", "patches/size_3/descriptors.npy",
            "patches/patches.json"} <= set(sequential)
    assert _files(tmp_path / "pipelined") == sequential
    assert _files(tmp_path / "one-behind") == sequential
    assert DescriptorStore.open(tmp_path / "pipelined" / "database").complete
    assert all(s.complete for s in PatchStore.open(tmp_path / "pipelined" / "patches").stores)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_a_failure_behind_the_backbone_is_raised_in_the_caller_and_keeps_the_rows_before_it(extractor, tmp_path,
                                                                                             engine):
    root = tmp_path / "images"
    names = write_images(root, 7, size=(160, 128))
    Image.fromarray(np.zeros((192, 224, 3), np.uint8)).save(root / names[4])  # more windows than a store row holds
    with pytest.raises(BadInputError, match="more than the 12 the store holds") as raised:
        _one_pass(extractor, root, names, tmp_path / "pipelined", 2, engine)
    assert str(tmp_path / "pipelined" / "patches") in str(raised.value)  # the store it could not write to

    # the same error, at the same image, as one thread doing every step in turn
    with pytest.raises(BadInputError) as sequential:
        _one_pass(extractor, root, names, tmp_path / "sequential", 0, engine)
    assert str(sequential.value) == str(raised.value).replace("pipelined", "sequential")
    rows = DescriptorStore.open(tmp_path / "pipelined" / "database")  # rows and checksums check on opening
    patches = PatchStore.open(tmp_path / "pipelined" / "patches")
    assert rows.pending().tolist() == [4, 5, 6]  # the batches before the failing image, nothing after it
    assert [s.pending().tolist() for s in patches.stores] == [[4, 5, 6]] * 2
    assert _files(tmp_path / "pipelined") == {k.replace("sequential", "pipelined"): v
                                              for k, v in _files(tmp_path / "sequential").items()}

    # with the image mended, the next run continues: the stores as one uninterrupted run writes them
    Image.fromarray(np.full((128, 160, 3), 90, np.uint8)).save(root / names[4])
    _one_pass(extractor, root, names, tmp_path / "pipelined", 2, engine)
    _one_pass(extractor, root, names, tmp_path / "whole", 0, engine)
    assert _files(tmp_path / "pipelined") == _files(tmp_path / "whole")


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_an_undecodable_image_stops_the_pass_after_the_batches_before_it_are_written(extractor, tmp_path, engine):
    root = tmp_path / "images"
    names = write_images(root, 7, size=(160, 128))
    (root / names[4]).write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError, match=names[4]):
        _one_pass(extractor, root, names, tmp_path / "pipelined", 2, engine)
    rows = DescriptorStore.open(tmp_path / "pipelined" / "database")
    patches = PatchStore.open(tmp_path / "pipelined" / "patches")
    assert rows.pending().tolist() == [4, 5, 6]  # every batch before the image's written, its own left pending
    assert [s.pending().tolist() for s in patches.stores] == [[4, 5, 6]] * 2

    # with the image mended, the next run continues: the stores as one uninterrupted run writes them
    Image.fromarray(np.full((128, 160, 3), 90, np.uint8)).save(root / names[4])
    _one_pass(extractor, root, names, tmp_path / "pipelined", 2, engine)
    _one_pass(extractor, root, names, tmp_path / "whole", 0, engine)
    assert _files(tmp_path / "pipelined") == _files(tmp_path / "whole")


def test_onnxruntime_pass_gives_the_global_extraction_s_descriptors_and_the_same_stores_in_lanes(extractor, tmp_path):
    """Through onnxruntime the pass's descriptor rows are the bits the same engine's global extraction writes (one
    thread, or two lanes of one-thread sessions), its patches those of torch's pass within float16's rounding, and
    both stores the same bytes on one thread and in two lanes."""
    root = tmp_path / "images"
    names = write_images(root, 5, size=(160, 128))
    for engine in ENGINES:
        _one_pass(extractor, root, names, tmp_path / engine, 2, engine)
    model, paths = extractor.model, [root / n for n in names]
    for engine in ("onnxruntime", "lanes"):
        rows = DescriptorStore.open(tmp_path / engine / "database").load()
        assert np.array_equal(rows, extract_descriptors(model, paths, batch_size=2, engine=ENGINES[engine]))
        assert np.abs(rows - DescriptorStore.open(tmp_path / "torch" / "database").load()).max() < 1e-4
    assert _files(tmp_path / "lanes") == _files(tmp_path / "onnxruntime")
    ort = PatchStore.open(tmp_path / "onnxruntime" / "patches")
    torch_pass = PatchStore.open(tmp_path / "torch" / "patches")
    for size in range(len(PRESET.sizes)):
        got, grids = ort.read(size, np.arange(len(names)))
        expected, expected_grids = torch_pass.read(size, np.arange(len(names)))
        assert np.array_equal(grids, expected_grids)
        assert float((got.float() - expected.float()).abs().max()) < 5e-3  # float16 rows: a few units of its rounding


@pytest.mark.parametrize(("engine", "during"), [("lanes", 1), ("onnxruntime", 2), ("torch", 2)])
def test_projections_beside_lanes_run_on_one_torch_thread_and_the_caller_s_count_comes_back(extractor, tmp_path,
                                                                                          monkeypatch, two_threads,
                                                                                          engine, during):
    """Beside onnxruntime's one-thread lanes each projection is a one-thread product (one helper a core); where the
    backbone runs in the calling thread (torch's threads or a session's) torch keeps the caller's count. The count
    comes back after the pass, also after a failure."""
    seen, project = [], PatchExtractor.from_features

    def counted(self, maps):
        seen.append(torch.get_num_threads())
        return project(self, maps)

    monkeypatch.setattr(PatchExtractor, "from_features", counted)
    root = tmp_path / "images"
    names = write_images(root, 7, size=(160, 128))
    _one_pass(extractor, root, names, tmp_path / "whole", 2, engine)
    assert seen == [during] * 4 and torch.get_num_threads() == 2  # 4 batches of 2
    (root / names[4]).write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError, match=names[4]):
        _one_pass(extractor, root, names, tmp_path / "failed", 2, engine)
    assert torch.get_num_threads() == 2
