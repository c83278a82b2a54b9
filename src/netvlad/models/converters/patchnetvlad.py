"""Patch-NetVLAD checkpoints (QVPR, e.g. ``pittsburgh_WPCA4096.pth.tar``) -> PlaceModel.

Layout: ``{'num_pcs', 'state_dict'}`` (as ``add_pca.py`` writes it); ``state_dict`` is pytorch-NetVlad's
(``encoder.*`` VGG16 to conv5_3, ``pool.conv.weight``, ``pool.centroids``, ``pool.conv.bias`` if vladv2)
plus ``WPCA.0.weight`` ``(P, K·D, 1, 1)`` and ``WPCA.0.bias`` ``(P,)``, P = num_pcs (128, 512 or 4096):
a 1×1 convolution applied to the cluster-major NetVLAD vector, then L2. We keep its global descriptor.
"""

from __future__ import annotations

from pathlib import Path

from netvlad.errors import BadInputError
from netvlad.models.converters.base import Conversion, ConvertOptions, register_converter
from netvlad.models.converters.pytorch_netvlad import IMAGENET_INPUT, convert_state, has_netvlad_pool, read_state
from netvlad.models.model_config import Preprocessing

FORMAT = "patchnetvlad"
# Its feature_extract.py resizes every image to 640×480 (imageresizew/h) before ImageNet normalisation.
PATCHNETVLAD_INPUT = Preprocessing(resize="fixed", size=(480, 640), mean=IMAGENET_INPUT.mean,
                                   std=IMAGENET_INPUT.std, value_scale=1.0)


def _detect(path: Path) -> bool:
    return has_netvlad_pool(path) and any(k.startswith("WPCA.") for k in read_state(path)[1])


@register_converter(FORMAT, "QVPR/Patch-NetVLAD *_WPCA<P>.pth.tar (VGG16 + NetVLAD + WPCA 1×1 conv)", _detect)
def convert(path: Path, options: ConvertOptions) -> Conversion:
    """A Patch-NetVLAD checkpoint -> our model with its PCA whitening (same global descriptors)."""
    path = Path(path)
    checkpoint, state = read_state(path)
    if not any(k.startswith("WPCA.") for k in state):
        raise BadInputError(f"{path}: state_dict has no field 'WPCA.0.weight'; a checkpoint without whitening "
                            "is pytorch-NetVlad's format (source='pytorch-netvlad')", path=path,
                            hint="--from pytorch-netvlad")
    num_pcs = checkpoint.get("num_pcs") if isinstance(checkpoint, dict) else None
    width = state["WPCA.0.weight"].shape[0] if "WPCA.0.weight" in state else None
    if num_pcs is not None and width is not None and int(num_pcs) != width:
        raise BadInputError(f"{path}: num_pcs={num_pcs} but WPCA.0.weight has {width} rows")
    return convert_state(path, checkpoint, state, options, FORMAT, PATCHNETVLAD_INPUT)
