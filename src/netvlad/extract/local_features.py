"""Dense local features of a frame for geometric verification, taken from the place model's own backbone.

Any model can verify a loop closure this way, GeM as well as NetVLAD: the backbone's feature map one stride step
before its last (MobileNetV2: the 96-channel stride-16 stage; VGG16: conv4 at stride 8) is fine enough for a
homography between two views (a 320 × 180 frame gives 20 × 12 cells, the last stride-32 map only 10 × 6), and
the global descriptor is pooled from the same pass, so describing a frame costs no second run of the early layers.
Each cell's feature is L2-normalised and kept as int8 (the unit vector × 127, rounded: every component within
1/254 of its value, cosines within about 0.01 at 96 dims) and its cell position as uint8; at most ``max_cells``
cells (the strongest by activation norm) are kept per frame, bounding the memory a long stream needs to what the
frame's matching needs (240 × 96 bytes + 240 × 2 = 23 KiB per 320 × 180 frame, 2.3 GB at 10⁵ frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from netvlad.data.images import resize_image
from netvlad.models import PlaceModel

MAX_CELLS = 256
SCALE = 127  # int8 code of a unit vector's component


@dataclass(frozen=True)
class LocalFeatures:
    """One frame's local features: ``descriptors`` ``(n, C)`` int8 codes of unit vectors (× ``SCALE``), ``xy``
    ``(n, 2)`` uint8 (column, row) cell positions on the ``grid`` (rows, cols) feature map, strongest first."""

    descriptors: np.ndarray
    xy: np.ndarray
    grid: tuple[int, int]

    def __len__(self) -> int:
        return len(self.descriptors)

    @property
    def nbytes(self) -> int:
        """Bytes the features occupy."""
        return self.descriptors.nbytes + self.xy.nbytes

    def strongest(self, n: int) -> LocalFeatures:
        """The first ``n`` cells (the strongest ``n``, as :func:`select_cells` orders them)."""
        return LocalFeatures(self.descriptors[:n], self.xy[:n], self.grid)

    def vectors(self) -> np.ndarray:
        """The descriptors decoded, ``(n, C)`` float32 (unit length to within the code's rounding)."""
        return self.descriptors.astype(np.float32) / SCALE


def local_stage(model: PlaceModel) -> int:
    """Number of backbone stages whose output is the local feature map: the deepest stage at half the backbone's
    final stride (all stages where no stage has it)."""
    stages = model.backbone.stages
    side = 8 * model.backbone.spec.stride
    x = torch.zeros(1, 3, side, side, device=next(model.parameters()).device)
    strides = []
    with torch.inference_mode():
        for stage in stages:
            x = stage(x)
            strides.append(side // x.shape[-1])
    half = [i for i, s in enumerate(strides) if s == strides[-1] // 2]
    return half[-1] + 1 if half else len(stages)


def select_cells(feature_map: torch.Tensor, max_cells: int = MAX_CELLS) -> LocalFeatures:
    """The ``max_cells`` strongest cells of one feature map ``(C, h, w)`` as :class:`LocalFeatures`, strongest
    first."""
    channels, rows, cols = feature_map.shape
    if max(rows, cols) > 256:
        raise ValueError(f"a local feature map of {rows} × {cols} cells does not fit uint8 positions: describe "
                         "frames at a smaller size")
    flat = feature_map.reshape(channels, -1).T.float()  # (h·w, C)
    norms = flat.norm(dim=1)
    keep = torch.argsort(-norms, stable=True)[:max_cells]  # strongest first: a prefix is the strongest n
    unit = flat[keep] / norms[keep].clamp_min(1e-12)[:, None]
    xy = torch.stack([keep % cols, keep // cols], 1)
    codes = torch.round(unit * SCALE).to(torch.int8)
    return LocalFeatures(codes.cpu().numpy(), xy.to(torch.uint8).cpu().numpy(), (rows, cols))


def image_tensor(model: PlaceModel, image) -> torch.Tensor:
    """One RGB PIL ``image`` in the model's preprocessing as ``(1, 3, H, W)`` in [0, 1]."""
    pre = model.config.preprocessing
    image = resize_image(image, pre.resize, pre.size)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)[None]


def describe_with_local(model: PlaceModel, image, cut: int, device: torch.device | str = "cpu", runner=None,
                        max_cells: int = MAX_CELLS) -> tuple[np.ndarray, LocalFeatures]:
    """(global descriptor ``(dim,)`` float32, :class:`LocalFeatures`) of one RGB PIL ``image``, ``cut`` from
    :func:`local_stage`. ``runner``: a torch runner made ``with_local(cut)`` (both from its one traced pass, the
    descriptor as extraction computes it), another engine (its global descriptor; the torch backbone runs up to
    the local stage), or None (the model itself)."""
    tensor = image_tensor(model, image)
    if getattr(runner, "cut", None) == cut:
        descriptor, local = runner(tensor)
        return np.asarray(descriptor[0], dtype=np.float32), select_cells(torch.from_numpy(local[0]), max_cells)
    stages = model.backbone.stages
    with torch.inference_mode():
        local = stages[:cut](model.normalize(tensor.to(device)))
        if runner is not None:
            descriptor = np.asarray(runner(tensor), dtype=np.float32)[0]
        else:
            descriptor = model.pool_features(stages[cut:](local))[0].float().cpu().numpy()
    return descriptor, select_cells(local[0], max_cells)
