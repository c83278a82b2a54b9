"""Dense local features of a frame for geometric verification."""

import numpy as np
import torch

from netvlad.extract.local_features import local_stage, select_cells
from netvlad.models import ModelConfig, PlaceModel


def test_select_cells_keeps_the_strongest_unit_vectors_in_order():
    feature_map = torch.zeros(3, 2, 3)
    feature_map[:, 0, 1] = torch.tensor([3.0, 4.0, 0.0])  # norm 5
    feature_map[:, 1, 2] = torch.tensor([0.0, 0.0, 2.0])  # norm 2
    feature_map[:, 1, 0] = torch.tensor([1.0, 0.0, 0.0])  # norm 1
    cells = select_cells(feature_map, max_cells=2)
    np.testing.assert_allclose(cells.xy, [[1, 0], [2, 1]])
    np.testing.assert_allclose(cells.descriptors.astype(np.float32), [[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], atol=1e-3)
    assert cells.grid == (2, 3)


def test_the_local_stage_is_at_half_the_final_stride():
    """MobileNetV2 (stride 32): the first 14 stages end at stride 16 (the 96-channel block)."""
    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="gem"), pretrained=False).eval()
    cut = local_stage(model)
    with torch.inference_mode():
        local = model.backbone.stages[:cut](torch.zeros(1, 3, 320, 192))
    assert cut == 14 and tuple(local.shape) == (1, 96, 20, 12)
