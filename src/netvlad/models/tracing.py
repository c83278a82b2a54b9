"""A model traced and frozen by TorchScript for CPU inference at one input shape.

``torch.jit.trace`` records the operations the model runs on an example input; ``torch.jit.freeze`` turns its
weights into constants and folds what depends on them alone; ``torch.jit.optimize_for_inference`` then fuses
convolutions with the batch norms and activations after them and lets oneDNN pick its kernels with weights
pre-packed. On a CPU this removes most of the per-layer Python and dispatch cost that dominates a batch-1 call of
a small network (docs/engine.md). A trace holds for the shape it was made at (sizes become constants), so callers
keep one per shape.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

logger = logging.getLogger(__name__)

TRACE_TOLERANCE = 1e-5  # max abs difference to the eager module on the example, else the trace is not used


def traced_for_inference(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule | None:
    """``module`` (in eval mode, returning a tensor or a tuple of them) traced on ``example`` ``(B, 3, H, W)``,
    frozen and optimised for inference; None (with one debug line) where tracing fails or the traced module's
    output on ``example`` differs from the eager one by more than :data:`TRACE_TOLERANCE`, so that the caller runs
    ``module`` itself."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript's deprecation and shape-constant notes, per call
            traced = torch.jit.trace(module, example, check_trace=False)
            optimised = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
            expected, got = module(example), optimised(example)
    except Exception as error:  # noqa: BLE001 - any TorchScript failure only means: run the module eagerly
        logger.debug("running %s eagerly: it cannot be traced (%s)", type(module).__name__, error)
        return None
    got, expected = (got, expected) if isinstance(got, tuple) else ((got,), (expected,))
    difference = max((float((g.float() - e.float()).abs().max()) if g.shape == e.shape else float("inf")
                      for g, e in zip(got, expected, strict=True)), default=float("inf"))
    if not difference <= TRACE_TOLERANCE:
        logger.debug("running %s eagerly: its trace differs by %.2g", type(module).__name__, difference)
        return None
    return optimised
