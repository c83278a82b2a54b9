"""The one pass of spatial verification with its stages overlapped: decoding ahead, the patch projection and the
store writes behind the backbone — the same stores as one thread doing everything in turn, failures raised in the
caller with every row before them kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from netvlad.errors import BadInputError
from netvlad.extract.store import DescriptorStore
from netvlad.match.verify.patch_store import PatchStore
from netvlad.match.verify.patches import PatchExtractor
from netvlad.match.verify.presets import VerifyPreset
from netvlad.match.verify.run import extract_with_patches
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.nn import PCAWhitening
from tests.extract.conftest import write_images

PRESET = VerifyPreset("tiny-rapid", "test", sizes=(2, 3), dim=16, scorer="rapid")


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


def _one_pass(extractor, root, names, out: Path, ahead: int):
    return extract_with_patches(extractor, root, names, out / "database", out / "patches", batch_size=2, ahead=ahead)


def test_pipelined_stores_are_byte_identical_to_one_thread_in_turn(extractor, tmp_path):
    names = write_images(tmp_path / "images", 7, size=(160, 128))  # 4 batches of 2: more than the 2 behind
    for ahead, out in ((0, tmp_path / "sequential"), (2, tmp_path / "pipelined"), (1, tmp_path / "one-behind")):
        _one_pass(extractor, tmp_path / "images", names, out, ahead)
    sequential = _files(tmp_path / "sequential")
    assert {"database/descriptors.npy", "patches/size_2/descriptors.npy", "patches/size_3/descriptors.npy",
            "patches/patches.json"} <= set(sequential)
    assert _files(tmp_path / "pipelined") == sequential
    assert _files(tmp_path / "one-behind") == sequential
    assert DescriptorStore.open(tmp_path / "pipelined" / "database").complete
    assert all(s.complete for s in PatchStore.open(tmp_path / "pipelined" / "patches").stores)


def test_a_failure_behind_the_backbone_is_raised_in_the_caller_and_keeps_the_rows_before_it(extractor, tmp_path):
    root = tmp_path / "images"
    names = write_images(root, 7, size=(160, 128))
    Image.fromarray(np.zeros((192, 224, 3), np.uint8)).save(root / names[4])  # more windows than a store row holds
    with pytest.raises(BadInputError, match="more than the 12 the store holds") as raised:
        _one_pass(extractor, root, names, tmp_path / "pipelined", ahead=2)
    assert str(tmp_path / "pipelined" / "patches") in str(raised.value)  # the store it could not write to

    # the same error, at the same image, as one thread doing every step in turn
    with pytest.raises(BadInputError) as sequential:
        _one_pass(extractor, root, names, tmp_path / "sequential", ahead=0)
    assert str(sequential.value) == str(raised.value).replace("pipelined", "sequential")
    rows = DescriptorStore.open(tmp_path / "pipelined" / "database")  # rows and checksums check on opening
    patches = PatchStore.open(tmp_path / "pipelined" / "patches")
    assert rows.pending().tolist() == [4, 5, 6]  # the batches before the failing image, nothing after it
    assert [s.pending().tolist() for s in patches.stores] == [[4, 5, 6]] * 2
    assert _files(tmp_path / "pipelined") == {k.replace("sequential", "pipelined"): v
                                              for k, v in _files(tmp_path / "sequential").items()}

    # with the image mended, the next run continues: the stores as one uninterrupted run writes them
    Image.fromarray(np.full((128, 160, 3), 90, np.uint8)).save(root / names[4])
    _one_pass(extractor, root, names, tmp_path / "pipelined", ahead=2)
    _one_pass(extractor, root, names, tmp_path / "whole", ahead=0)
    assert _files(tmp_path / "pipelined") == _files(tmp_path / "whole")
