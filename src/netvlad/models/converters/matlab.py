"""MatConvNet networks of the official MATLAB NetVLAD (Relja/netvlad) -> PlaceModel.

The published ``vd16_*_conv5_3_vlad_preL2_intra_white.mat`` hold ``net`` in MatConvNet's simplenn layout:
``net.layers`` is a cell of structs with ``type``/``name``/``weights`` (a cell). In order: VGG16 conv1_1 …
conv5_3 (``conv`` weights H×W×In×Out and bias Out, ``relu``, ``pool``; relu/pool swapped, which is the same
function), ``normalize`` preL2 (param [2D, 1e-12, 1, 0.5]: x/√(ε+‖x‖²) over channels), the custom layer
``vlad:core`` (layerVLAD: weights {1×1×D×K assignment filters, no bias; 1×1×D×K offsets = −centroids};
layerVLADv2 adds a 1×K bias as weights{2}), ``normalize`` vlad:intranorm over D, custom ``postL2``, the
``conv`` WPCA (weights {1×1×(K·D)×P, P×1}) and custom ``finalL2``. The VLAD output is a 1×K×D array, so
its column-major flattening is D-major (index j·K + k); ours is cluster-major (k·D + j), hence the
whitening columns are permuted (without whitening, our raw VLAD is the
same vector in cluster-major order). Input: RGB 0–255 minus ``net.meta.normalization.averageImage``.

The original files store layerVLAD as MATLAB class objects, which Python cannot read; they must be turned
into structs once in MATLAB (``net.layers{i} = struct(net.layers{i})``), as hloc's ``*_struct.mat`` are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netvlad.errors import BadInputError
from netvlad.models.backbone_specs import get_backbone_spec
from netvlad.models.converters.base import (
    Conversion,
    ConvertOptions,
    build_model,
    eigenvalues_from_whitening,
    provenance,
    register_converter,
)
from netvlad.models.converters.matfile import as_array, as_cell, as_text, get_field, load_net, unwrap
from netvlad.models.model_config import ModelConfig, Preprocessing

logger = logging.getLogger(__name__)

FORMAT = "matlab"
BACKBONE = "vgg16"


@dataclass
class _Parsed:
    """What the layer walk found, in MATLAB layouts."""

    convs: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)  # name, H×W×In×Out, (Out,)
    pre_l2: bool = False
    vlad: tuple[np.ndarray, np.ndarray | None, np.ndarray] | None = None  # D×K assign, (K,) bias, D×K offset
    intra: bool = False
    post_l2: bool = False
    whitening: tuple[np.ndarray, np.ndarray] | None = None  # (K·D)×P, (P,)
    final_l2: bool = False


def _detect(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(6) == b"MATLAB"


def _weights(layer, index: int, count: int, path: Path) -> list:
    return as_cell(get_field(layer, "weights", f"net.layers{{{index}}}", path), f"net.layers{{{index}}}.weights",
                 path, count)


def _conv(parsed: _Parsed, layer, index: int, name: str, path: Path) -> None:
    weight, bias = _weights(layer, index, 2, path)
    where = f"net.layers{{{index}}} ({name})"
    if parsed.vlad is None:  # a backbone convolution
        weight = np.asarray(weight, dtype=np.float32)
        if weight.ndim == 3:  # MATLAB dropped a trailing Out = 1
            weight = weight[..., None]
        if weight.ndim != 4:
            raise BadInputError(f"{path}: {where}.weights{{1}} has shape {weight.shape}, expected H×W×In×Out")
        _expect(layer, {"pad": (weight.shape[0] - 1) // 2, "stride": 1}, index, name, path)
        parsed.convs.append((name, weight, as_array(bias, (weight.shape[3],), f"{where}.weights{{2}}", path)))
    elif parsed.post_l2 and parsed.whitening is None:  # the (W)PCA layer
        in_dim = int(np.asarray(weight).size // max(np.asarray(bias).size, 1))
        out_dim = int(np.asarray(bias).size)
        matrix = as_array(weight, (1, 1, in_dim, out_dim), f"{where}.weights{{1}}", path)[0, 0]
        parsed.whitening = (matrix, as_array(bias, (out_dim,), f"{where}.weights{{2}}", path))
    else:
        raise BadInputError(f"{path}: unexpected convolution {where} after the NetVLAD layer")


def _normalize(parsed: _Parsed, layer, index: int, name: str, path: Path) -> None:
    param = np.asarray(unwrap(get_field(layer, "param", f"net.layers{{{index}}}", path)), dtype=np.float64).ravel()
    # [N, κ, α, β]: x·(κ + α·Σ x²)^-β over N channels; an L2 normalisation when α = 1, β = ½ and N covers all.
    if param.size != 4 or param[2] != 1 or param[3] != 0.5 or param[1] > 1e-6:
        raise BadInputError(f"{path}: net.layers{{{index}}} ({name}) normalize param {param.tolist()} is not an "
                         "L2 normalisation [2D, 1e-12, 1, 0.5]")
    if parsed.vlad is None:
        parsed.pre_l2 = True
    else:
        parsed.intra = True


def _has_weights(layer) -> bool:
    names = getattr(unwrap(layer), "_fieldnames", None) or []
    return "weights" in names and np.asarray(unwrap(layer.weights)).size > 0


def _custom(parsed: _Parsed, layer, index: int, name: str, path: Path) -> None:
    names = getattr(unwrap(layer), "_fieldnames", None) or []
    if parsed.vlad is None and ("K" in names or "vlad" in name.lower() or _has_weights(layer)):
        _vlad(parsed, layer, index, name, path)
    elif _has_weights(layer):
        raise BadInputError(f"{path}: unsupported custom layer net.layers{{{index}}} ({name})")
    elif parsed.vlad is None:
        raise BadInputError(f"{path}: custom layer net.layers{{{index}}} ({name}) before any NetVLAD layer: "
                         "only NetVLAD networks (vlad/vladv2) are supported, not max/avg pooling")
    elif parsed.whitening is None:  # layerWholeL2Normalize
        parsed.post_l2 = True
    else:
        parsed.final_l2 = True


def _vlad(parsed: _Parsed, layer, index: int, name: str, path: Path) -> None:
    """layerVLAD {assignment, offsets} or layerVLADv2 {assignment, bias, offsets}, as a struct."""
    weights = _weights(layer, index, None, path)
    if len(weights) not in (2, 3):
        raise BadInputError(f"{path}: net.layers{{{index}}} ({name}) has {len(weights)} weights; layerVLAD has "
                         "2 (assignment, offsets), layerVLADv2 3 (assignment, bias, offsets)")
    assign = np.asarray(weights[0])
    if assign.ndim not in (3, 4):
        raise BadInputError(f"{path}: net.layers{{{index}}}.weights{{1}} is {assign.shape}, expected 1×1×D×K")
    dim, k = assign.shape[2], (assign.shape[3] if assign.ndim == 4 else 1)
    where = f"net.layers{{{index}}} ({name}).weights"
    parsed.vlad = (
        as_array(assign, (1, 1, dim, k), f"{where}{{1}}", path)[0, 0],
        as_array(weights[1], (k,), f"{where}{{2}}", path) if len(weights) == 3 else None,
        as_array(weights[-1], (1, 1, dim, k), f"{where}{{{len(weights)}}}", path)[0, 0],
    )


def _pass(parsed: _Parsed, layer, index: int, name: str, path: Path) -> None:
    if parsed.vlad is not None:
        raise BadInputError(f"{path}: net.layers{{{index}}} ({name}) after the NetVLAD layer is not supported")


def _pool(parsed: _Parsed, layer, index: int, name: str, path: Path) -> None:
    """VGG16's 2×2 max pooling, stride 2, no padding: what torchvision computes (floor mode)."""
    _pass(parsed, layer, index, name, path)
    _expect(layer, {"method": "max", "pool": 2, "stride": 2, "pad": 0}, index, name, path)


def _expect(layer, values: dict, index: int, name: str, path: Path) -> None:
    """Fields that are present must hold ``values`` (numbers broadcast over MATLAB vectors)."""
    names = getattr(unwrap(layer), "_fieldnames", None) or []
    for key, want in values.items():
        if key not in names:
            continue
        got = unwrap(getattr(unwrap(layer), key))
        same = as_text(got) == want if isinstance(want, str) else np.all(np.asarray(got, np.float64) == want)
        if not same:
            raise BadInputError(f"{path}: net.layers{{{index}}} ({name}).{key} is {got!r}, VGG16 uses {want!r}")


LAYER_TYPES = {"conv": _conv, "normalize": _normalize, "custom": _custom, "relu": _pass, "pool": _pool}


def parse_layers(net, path: Path) -> _Parsed:
    """Walk ``net.layers`` in order, checking each against the published NetVLAD layout."""
    parsed = _Parsed()
    for index, layer in enumerate(as_cell(get_field(net, "layers", "net", path), "net.layers", path), start=1):
        kind = as_text(get_field(layer, "type", f"net.layers{{{index}}}", path))
        name = as_text(get_field(layer, "name", f"net.layers{{{index}}}", path))
        if kind not in LAYER_TYPES:
            raise BadInputError(f"{path}: net.layers{{{index}}} ({name}) has unsupported type {kind!r}; "
                             f"known: {', '.join(LAYER_TYPES)}")
        LAYER_TYPES[kind](parsed, layer, index, name, path)
    missing = [what for what, ok in (("a NetVLAD layer (vlad:core)", parsed.vlad is not None),
                                     ("intra-normalisation (vlad:intranorm)", parsed.intra),
                                     ("the L2 normalisation after NetVLAD (postL2)", parsed.post_l2),
                                     ("the L2 normalisation after whitening (finalL2)",
                                      parsed.whitening is None or parsed.final_l2)) if not ok]
    if missing:
        raise BadInputError(f"{path}: net.layers lacks {'; '.join(missing)}")
    return parsed


def average_colour(net, path: Path) -> tuple[float, float, float]:
    """RGB mean (0–255) from ``net.meta.normalization.averageImage`` (a colour or a constant image)."""
    normalization = get_field(get_field(net, "meta", "net", path), "normalization", "net.meta", path)
    image = np.asarray(unwrap(get_field(normalization, "averageImage", "net.meta.normalization", path)), np.float64)
    if image.size < 3 or (image.shape[-1] != 3 and image.size != 3):
        raise BadInputError(f"{path}: net.meta.normalization.averageImage has shape {image.shape}, expected an RGB "
                         "colour or an H×W×3 image")
    pixels = image.reshape(-1, 3)
    if np.ptp(pixels, axis=0).max() > 1e-3:
        logger.warning("%s: averageImage is not constant; using its mean colour", path)
    return tuple(float(v) for v in pixels.mean(0))


def _backbone_tensors(convs: list, path: Path) -> dict[str, torch.Tensor]:
    spec = get_backbone_spec(BACKBONE)
    with torch.device("meta"):
        stages = spec.cut(spec.build())
    indices = [i for i, stage in enumerate(stages) if isinstance(stage, nn.Conv2d)]
    if len(convs) != len(indices):
        raise BadInputError(f"{path}: {len(convs)} convolutions before the NetVLAD layer; only VGG16 cropped at "
                         f"conv5_3 ({len(indices)} convolutions, the published vd16 networks) is supported")
    tensors = {}
    for index, (_, weight, bias) in zip(indices, convs, strict=True):
        tensors[f"backbone.stages.{index}.weight"] = torch.from_numpy(weight.transpose(3, 2, 0, 1).copy())
        tensors[f"backbone.stages.{index}.bias"] = torch.from_numpy(bias)
    return tensors


def _whitening_tensors(whitening: tuple[np.ndarray, np.ndarray], num_clusters: int, dim: int,
                       path: Path) -> dict[str, torch.Tensor]:
    matrix, bias = whitening
    if matrix.shape[0] != num_clusters * dim:
        raise BadInputError(f"{path}: the WPCA layer takes {matrix.shape[0]}-D input, NetVLAD gives "
                            f"{num_clusters * dim}")
    # MATLAB input index j·K + k (D-major) -> ours k·D + j (cluster-major).
    weight = matrix.T.reshape(-1, dim, num_clusters).transpose(0, 2, 1).reshape(-1, num_clusters * dim)
    weight = torch.from_numpy(np.ascontiguousarray(weight))
    return {"whitening.linear.weight": weight, "whitening.linear.bias": torch.from_numpy(bias),
            "whitening.eigenvalues": eigenvalues_from_whitening(weight)}


@register_converter(FORMAT, "official MATLAB/MatConvNet NetVLAD .mat (vd16 + vlad/vladv2 + WPCA), struct layout",
                    _detect)
def convert(path: Path, options: ConvertOptions) -> Conversion:
    """A MatConvNet NetVLAD network -> our VGG16 + NetVLAD (+ whitening) with the 0–255 mean-colour input."""
    path = Path(path)
    if options.backbone not in (None, BACKBONE):
        raise BadInputError(f"{path}: MATLAB NetVLAD networks are VGG16 ('{BACKBONE}'), not {options.backbone!r}")
    net = load_net(path)
    parsed = parse_layers(net, path)
    assign, bias, offsets = parsed.vlad
    dim, num_clusters = assign.shape
    if options.num_clusters not in (None, num_clusters):
        raise BadInputError(f"{path}: you said K={options.num_clusters} but the NetVLAD layer has K={num_clusters}")
    if options.vladv2 not in (None, bias is not None):
        raise BadInputError(f"{path}: you said vladv2={options.vladv2} but the NetVLAD layer is "
                         f"{'layerVLADv2' if bias is not None else 'layerVLAD'}")
    tensors = _backbone_tensors(parsed.convs, path)
    tensors["pool.conv.weight"] = torch.from_numpy(assign.T.reshape(num_clusters, dim, 1, 1).copy())
    tensors["pool.centroids"] = torch.from_numpy(-offsets.T.copy())  # the layer stores −c_k
    if bias is not None:
        tensors["pool.conv.bias"] = torch.from_numpy(bias)
    whitening = parsed.whitening if options.whitening else None
    if whitening is not None:
        tensors.update(_whitening_tensors(whitening, num_clusters, dim, path))
    mean = average_colour(net, path)
    config = ModelConfig(
        backbone=BACKBONE, pool="netvlad", num_clusters=num_clusters, normalize_input=parsed.pre_l2,
        parametrization="paper" if bias is not None else "official", netvlad_bias=bias is not None,
        whitening_dim=whitening[0].shape[1] if whitening is not None else None,
        preprocessing=Preprocessing(mean=mean, std=(1.0, 1.0, 1.0), value_scale=255.0),
    )
    model = build_model(config, tensors, path)
    return Conversion(model, provenance(path, FORMAT, layers=[name for name, _, _ in parsed.convs],
                                        average_colour=list(mean), pre_l2=parsed.pre_l2))
