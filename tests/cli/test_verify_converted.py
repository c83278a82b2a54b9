"""A Patch-NetVLAD checkpoint converted by `netvlad convert` re-ranks with `--verify`, its patches projected by its own
WPCA (checked against the file's WPCA convolution applied to the raw patch vectors), no whitening fitted.

Random VGG16-shaped weights under the keys Patch-NetVLAD saves: no real checkpoint can be downloaded here."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from netvlad import load
from netvlad.cli.main import main
from netvlad.match.verify.patch_store import PatchStore
from netvlad.match.verify.patches import iter_images
from netvlad.models import Preprocessing
from netvlad.nn.patch import patch_netvlad
from tests.conftest import copy_sequence, shared_dataset
from tests.models.test_convert_pytorch import make_state

PCS = 24


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    return copy_sequence(shared_dataset("gardens_point"), tmp_path_factory.mktemp("gp"), ("day_left", "day_right"),
                         [f"Image{i:03d}.jpg" for i in range(0, 60, 10)])


def test_converted_patchnetvlad_checkpoint_verifies_with_its_own_wpca(sequence, tmp_path, capsys):
    state = make_state("vgg16", k=4, vladv2=False, pcs=PCS, seed=5)
    torch.save({"num_pcs": PCS, "state_dict": state}, tmp_path / "pittsburgh_WPCA24.pth.tar")
    checkpoint = tmp_path / "converted.safetensors"
    assert main(["convert", str(tmp_path / "pittsburgh_WPCA24.pth.tar"), "--out", str(checkpoint)]) == 0
    out, store = tmp_path / "r.json", tmp_path / "s"
    assert main(["evaluate", str(sequence), "--database", "day_left", "--queries", "day_right", "--frame-tolerance",
                 "2", "--workers", "0", "--no-progress", "--recall", "1,3", "--no-pictures", "--model",
                 str(checkpoint), "--resize", "fixed", "--size", "96", "128", "--store", str(store), "--verify",
                 "speed", "--verify-top", "3", "--output", str(out)]) == 0
    assert "speed (top 3)" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert set(report["verified_recall"]) == {"1", "3"} and report["verify"]["skipped_sizes"] == 0
    assert not list((store / "patches").glob("whitening_*.pt"))  # nothing fitted: the checkpoint's own WPCA

    # the stored database patches: the file's WPCA (a 1×1 convolution) on the raw K·D patch vectors, L2-normalised
    model = load(checkpoint).eval()
    model.config = dataclasses.replace(model.config, preprocessing=Preprocessing("fixed", (96, 128)))  # as --size
    patches = PatchStore.open(store / "patches" / "speed")
    assert patches.dim == PCS  # the speed preset's 512 dims cropped to the 24 the checkpoint has
    paths = [sequence / "day_left" / f"Image{i:03d}.jpg" for i in range(0, 60, 10)]
    layer = model.pool
    weight, bias = state["WPCA.0.weight"], state["WPCA.0.bias"]
    for indices, images in iter_images(model, paths, batch_size=len(paths)):
        with torch.no_grad():
            raw = patch_netvlad(model.features(images).float(), layer.conv.weight.view(4, -1), layer.conv.bias,
                                layer.centroids, 5)  # (B, windows, K·D), before any projection
            expected = F.normalize(F.conv2d(raw.flatten(0, 1)[..., None, None], weight, bias).flatten(1), dim=1)
        stored, grids = patches.read(0, np.asarray(indices))
        assert grids.tolist() == [[2, 4]] * len(paths)  # a 6×8 VGG16 map: 2×4 windows of 5×5 cells
        torch.testing.assert_close(stored.flatten(0, 1), expected, atol=2e-3, rtol=0)  # float16 store
