"""pytorch-NetVlad checkpoints (Nanne/pytorch-NetVlad ``checkpoint.pth.tar``) -> PlaceModel.

Layout: ``{'epoch', 'state_dict', 'recalls', 'best_score', 'optimizer', 'parallel'}``; ``state_dict`` holds
``encoder.<i>.*`` (torchvision ``features[:-2]``: VGG16 up to conv5_3 or AlexNet up to conv5, both before
their ReLU), ``pool.conv.weight`` ``(K, D, 1, 1)``, ``pool.conv.bias`` ``(K,)`` only for vladv2, and
``pool.centroids`` ``(K, D)``; ``module.`` appears after ``encoder.``/``pool.`` when saved from DataParallel.
The forward pass is L2 → softmax(conv) → Σ a_k (x − c_k) → intra-norm → L2, cluster-major: ours exactly.
Images are normalised with ImageNet mean/std on RGB in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch

from netvlad.errors import BadInputError
from netvlad.models.backbone_specs import IMAGENET_MEAN, IMAGENET_STD
from netvlad.models.converters.base import (
    Conversion,
    ConvertOptions,
    build_model,
    eigenvalues_from_whitening,
    is_torch_file,
    load_torch_checkpoint,
    provenance,
    register_converter,
    state_dict_of,
)
from netvlad.models.model_config import ModelConfig, Preprocessing

FORMAT = "pytorch-netvlad"
# Encoders pytorch-NetVlad and Patch-NetVLAD build (``--arch``), by their output channels D.
BACKBONE_BY_CHANNELS = {512: "vgg16", 256: "alexnet"}
REQUIRED = ("pool.centroids", "pool.conv.weight")
IMAGENET_INPUT = Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD, value_scale=1.0)


def read_state(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The checkpoint dict and its ``state_dict`` (``module.`` removed)."""
    checkpoint = load_torch_checkpoint(path)
    return checkpoint, state_dict_of(checkpoint, path)


def has_netvlad_pool(path: Path) -> bool:
    """A torch file whose state_dict has ``pool.centroids`` and ``encoder.*`` keys."""
    if not is_torch_file(path):
        return False
    try:
        _, state = read_state(path)
    except ValueError:
        return False
    return "pool.centroids" in state and any(k.startswith("encoder.") for k in state)


def _detect(path: Path) -> bool:
    return has_netvlad_pool(path) and not any(k.startswith("WPCA.") for k in read_state(path)[1])


def pool_config(state: dict[str, torch.Tensor], path: Path, options: ConvertOptions) -> tuple[int, int, bool, str]:
    """K, D, vladv2 and backbone from the state_dict, checked against what the user stated."""
    for key in REQUIRED:
        if key not in state:
            raise BadInputError(f"{path}: state_dict has no field '{key}' (found {sorted(state)[:6]}…); "
                             "not a pytorch-NetVlad / Patch-NetVLAD NetVLAD checkpoint")
    num_clusters, dim = state["pool.centroids"].shape
    if tuple(state["pool.conv.weight"].shape) != (num_clusters, dim, 1, 1):
        raise BadInputError(f"{path}: pool.conv.weight is {tuple(state['pool.conv.weight'].shape)}, "
                         f"expected ({num_clusters}, {dim}, 1, 1) to match pool.centroids")
    vladv2 = "pool.conv.bias" in state
    if options.vladv2 is not None and options.vladv2 != vladv2:
        raise BadInputError(f"{path}: you said vladv2={options.vladv2} but the file "
                         f"{'has' if vladv2 else 'has no'} pool.conv.bias (vladv2={vladv2})")
    if options.num_clusters is not None and options.num_clusters != num_clusters:
        raise BadInputError(f"{path}: you said K={options.num_clusters} but pool.centroids holds K={num_clusters}")
    backbone = options.backbone or BACKBONE_BY_CHANNELS.get(dim)
    if backbone is None:
        raise BadInputError(f"{path}: pool.centroids has D={dim}; no known encoder gives {dim} channels "
                            f"(known: {BACKBONE_BY_CHANNELS}); state it with ConvertOptions(backbone=...)",
                            path=path, hint="--backbone NAME")
    return num_clusters, dim, vladv2, backbone


def whitening_tensors(state: dict[str, torch.Tensor], path: Path, in_dim: int) -> dict[str, torch.Tensor]:
    """Patch-NetVLAD's ``WPCA.0`` 1×1 convolution ``(P, K·D, 1, 1)`` as our whitening layer."""
    for key in ("WPCA.0.weight", "WPCA.0.bias"):
        if key not in state:
            raise BadInputError(f"{path}: state_dict has WPCA layers but no field '{key}'")
    weight, bias = state["WPCA.0.weight"], state["WPCA.0.bias"]
    if weight.dim() != 4 or weight.shape[1:] != (in_dim, 1, 1) or bias.shape != weight.shape[:1]:
        raise BadInputError(f"{path}: WPCA.0.weight {tuple(weight.shape)} / bias {tuple(bias.shape)} do not "
                         f"form a 1×1 convolution from the {in_dim}-D NetVLAD descriptor")
    weight = weight.flatten(1)
    return {"whitening.linear.weight": weight, "whitening.linear.bias": bias,
            "whitening.eigenvalues": eigenvalues_from_whitening(weight)}


def convert_state(path: Path, checkpoint: dict, state: dict[str, torch.Tensor], options: ConvertOptions,
                  source: str, preprocessing: Preprocessing = IMAGENET_INPUT) -> Conversion:
    """Map encoder/pool(/WPCA) tensors onto a PlaceModel with the source's (ImageNet) input convention."""
    num_clusters, dim, vladv2, backbone = pool_config(state, path, options)
    tensors = {"backbone.stages." + k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    tensors.update({k: v for k, v in state.items() if k.startswith("pool.")})
    has_wpca = any(k.startswith("WPCA.") for k in state)
    whitening_dim = None
    if has_wpca and options.whitening:
        tensors.update(whitening_tensors(state, path, num_clusters * dim))
        whitening_dim = tensors["whitening.linear.weight"].shape[0]
    leftover = sorted(k for k in state if not k.startswith(("encoder.", "pool.", "WPCA.")))
    if leftover:
        raise BadInputError(f"{path}: state_dict holds layers this converter does not know: {leftover[:4]}")
    config = ModelConfig(
        backbone=backbone, pool="netvlad", num_clusters=num_clusters, normalize_input=True,
        parametrization="paper" if vladv2 else "official", netvlad_bias=vladv2, whitening_dim=whitening_dim,
        preprocessing=preprocessing,
    )
    details = {key: _plain(checkpoint[key]) for key in ("epoch", "best_score", "recalls", "num_pcs")
               if key in checkpoint}
    model = build_model(config, tensors, path, origin=_source_key)
    return Conversion(model, provenance(path, source, vladv2=vladv2, **details))


def _source_key(key: str) -> str:
    """Our state-dict key as the source names it (``backbone.stages.3.weight`` -> ``encoder.3.weight``)."""
    if key.startswith("backbone.stages."):
        return "state_dict['encoder." + key[len("backbone.stages."):] + "']"
    return f"state_dict['{key.replace('whitening.linear.', 'WPCA.0.')}']"


def _plain(value):
    """JSON-friendly copy of checkpoint metadata (numpy scalars -> float, dict keys -> str)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


@register_converter(FORMAT, "Nanne/pytorch-NetVlad checkpoint.pth.tar (VGG16/AlexNet + NetVLAD)", _detect)
def convert(path: Path, options: ConvertOptions) -> Conversion:
    """A pytorch-NetVlad ``checkpoint.pth.tar`` -> our model (same descriptors)."""
    checkpoint, state = read_state(path)
    return convert_state(Path(path), checkpoint, state, options, FORMAT)
