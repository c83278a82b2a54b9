"""Dense local features of a frame for geometric verification."""

import numpy as np
import torch
from PIL import Image

from netvlad.extract.local_features import (
    SCALE,
    LocalFeatures,
    describe_with_local,
    image_tensor,
    local_stage,
    select_cells,
)
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.places.loop_closure import LoopClosureDetector
from tests.conftest import shared_dataset


def test_select_cells_keeps_the_strongest_unit_vectors_in_order():
    feature_map = torch.zeros(3, 2, 3)
    feature_map[:, 0, 1] = torch.tensor([3.0, 4.0, 0.0])  # norm 5
    feature_map[:, 1, 2] = torch.tensor([0.0, 0.0, 2.0])  # norm 2
    feature_map[:, 1, 0] = torch.tensor([1.0, 0.0, 0.0])  # norm 1
    cells = select_cells(feature_map, max_cells=2)
    np.testing.assert_allclose(cells.xy, [[1, 0], [2, 1]])
    np.testing.assert_array_equal(cells.descriptors, [[76, 102, 0], [0, 0, 127]])  # round(127 × 0.6), …
    np.testing.assert_allclose(cells.vectors(), [[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], atol=0.5 / SCALE)
    assert cells.descriptors.dtype == np.int8 and cells.xy.dtype == np.uint8
    assert cells.grid == (2, 3) and cells.nbytes == 2 * 3 + 2 * 2
    every = select_cells(feature_map, max_cells=3)  # strongest first, not in grid order
    np.testing.assert_allclose(every.xy, [[1, 0], [2, 1], [0, 1]])
    np.testing.assert_array_equal(every.strongest(2).descriptors, cells.descriptors)


def test_int8_codes_verify_a_real_revisit_as_the_exact_features_do():
    """Gardens Point place 100 seen from both sides of the path, at 320 px: the RANSAC inliers of the int8 codes
    are those of the float32 unit vectors they encode to within 10 % (RANSAC's draws follow the mutual matches:
    57 float32, 54 int8, 12 needed)."""
    gardens = shared_dataset("gardens_point")
    torch.manual_seed(0)
    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="gem",
                                   preprocessing=Preprocessing(resize="longest", size=(320,))), pretrained=True).eval()
    cut = local_stage(model)
    coded, exact = [], []
    for side in ("day_left", "day_right"):
        image = Image.open(sorted((gardens / side).iterdir())[100]).convert("RGB")
        coded.append(describe_with_local(model, image, cut)[1])
        with torch.inference_mode():  # the same cells, unquantised (an independent float32 reference)
            feature_map = model.backbone.stages[:cut](model.normalize(image_tensor(model, image)))[0]
        flat = feature_map.reshape(feature_map.shape[0], -1).T
        cells = flat[coded[-1].xy[:, 1].astype(np.int64) * coded[-1].grid[1] + coded[-1].xy[:, 0]]
        unit = (cells / cells.norm(dim=1, keepdim=True)).numpy()
        np.testing.assert_allclose(coded[-1].vectors(), unit, atol=0.5 / SCALE + 1e-6)
        exact.append(LocalFeatures(unit * SCALE, coded[-1].xy, coded[-1].grid))  # .vectors() gives back unit
    detector = LoopClosureDetector()
    assert len(coded[0]) == 240 and coded[0].nbytes == 240 * 96 + 240 * 2
    reference = detector.inliers(*exact, seed=100)
    assert reference > 40 and abs(detector.inliers(*coded, seed=100) - reference) <= 0.1 * reference


def test_the_local_stage_is_at_half_the_final_stride():
    """MobileNetV2 (stride 32): the first 14 stages end at stride 16 (the 96-channel block)."""
    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="gem"), pretrained=False).eval()
    cut = local_stage(model)
    with torch.inference_mode():
        local = model.backbone.stages[:cut](torch.zeros(1, 3, 320, 192))
    assert cut == 14 and tuple(local.shape) == (1, 96, 20, 12)
