"""Eval batch norms folded into the convolutions before them: the same function with one operation fewer per layer.

In eval mode a batch norm is a fixed per-channel affine map, y = (x − μ)·γ/√(σ² + ε) + β, so a convolution followed
by one equals a single convolution with weights w·γ/√(σ² + ε) and bias (b − μ)·γ/√(σ² + ε) + β: torch.fx finds the
pairs (a convolution whose only user is a batch norm) and ``fuse_conv_bn_eval`` rewrites them. The result differs
from the unfolded model only by float rounding (≤ 1e-5 on the descriptors of real photos, tests/models).
"""

from __future__ import annotations

import copy
import logging

from torch import nn

logger = logging.getLogger(__name__)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """A copy of ``model``, in eval mode, whose backbone's batch norms are folded into their convolutions.

    ``model`` is a :class:`~netvlad.models.PlaceModel` (its ``backbone.stages`` are folded), a module with a
    ``foldable`` tuple of submodule names (each folded) or any module (folded whole). The caller's model is left
    untouched. A backbone that torch.fx cannot trace (a custom network with data-dependent control flow) is
    returned unfolded, with one debug line: the copy then computes exactly what the model does.
    """
    from torch.fx.experimental.optimization import fuse

    folded = copy.deepcopy(model).eval()
    stages = getattr(getattr(folded, "backbone", None), "stages", None)
    try:
        if getattr(folded, "foldable", None):  # a module naming the parts that hold its convolutions
            for name in folded.foldable:
                setattr(folded, name, fuse(getattr(folded, name)))
        elif stages is not None:
            folded.backbone.stages = fuse(stages)
        else:
            folded = fuse(folded)
    except Exception as error:  # noqa: BLE001 - any tracing failure only means: run it unfolded
        logger.debug("batch norms left unfolded: torch.fx cannot trace the backbone (%s)", error)
    return folded
