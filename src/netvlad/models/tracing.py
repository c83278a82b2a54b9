"""A model traced and frozen by TorchScript for CPU inference at one input shape.

``torch.jit.trace`` records the operations the model runs on an example input; ``torch.jit.freeze`` turns its
weights into constants and folds what depends on them alone. The frozen graph is then compiled by oneDNN Graph
(TorchScript's ``onednn_fusion``): oneDNN takes whole runs of convolutions with their activations (ReLU6 included),
additions and poolings as fused partitions with weights pre-packed in its own layout, which also removes the
per-layer dispatch cost that dominates a batch-1 call of a small network and the penalty torch's own batched CPU
convolutions pay (docs/engine.md). The fusion is compiled during the first calls (TorchScript's profiling runs), so
the example is run a few times with it switched on, and the switch is put back as it was. Where oneDNN Graph is
missing or fails, ``torch.jit.optimize_for_inference`` (conv + activation fusion by torch's own passes) is used.
A trace holds for the shape it was made at (sizes become constants), so callers keep one per shape.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import torch
from torch import nn

logger = logging.getLogger(__name__)

# max difference to the eager module on the example, relative to each output's largest magnitude (at least 1), else
# the trace is not used: a descriptor (unit length) within 1e-5, an unnormalised feature map (MobileNetV2's last maps
# reach 6) within 1e-5 of its scale, as float32 rounds it
TRACE_TOLERANCE = 1e-5
PROFILED_RUNS = 3  # calls of the example with the fusion on: TorchScript profiles, then compiles the fused graph


@contextlib.contextmanager
def _onednn_fusion():
    """oneDNN Graph fusion switched on for TorchScript inside the block, put back as it was after it."""
    before = torch.jit.onednn_fusion_enabled()
    torch.jit.enable_onednn_fusion(True)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(before)


def _fused(frozen: torch.jit.ScriptModule, example: torch.Tensor) -> torch.jit.ScriptModule:
    """``frozen`` compiled by oneDNN Graph for inputs like ``example`` (the profiling runs happen here)."""
    with _onednn_fusion():
        for _ in range(PROFILED_RUNS):
            frozen(example)
    return frozen


def relative_difference(got: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference of two outputs over the larger of 1 and ``expected``'s largest magnitude (inf
    when their shapes differ).

    Examples:
        >>> round(relative_difference(torch.tensor([6.0, 0.5]), torch.tensor([6.00003, 0.5])), 7)  # 3e-5 of 6
        5e-06
        >>> round(relative_difference(torch.tensor([0.25]), torch.tensor([0.25002])), 7)  # scale below 1: absolute
        2e-05
    """
    if got.shape != expected.shape:
        return float("inf")
    scale = max(1.0, float(expected.float().abs().max())) if expected.numel() else 1.0
    return float((got.float() - expected.float()).abs().max()) / scale if got.numel() else 0.0


def traced_for_inference(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule | None:
    """``module`` (in eval mode, returning a tensor or a tuple of them) traced on ``example`` ``(B, 3, H, W)``,
    frozen and compiled for inference (oneDNN Graph, else ``optimize_for_inference``); None (with one debug line)
    where tracing fails or an output of the compiled module on ``example`` differs from the eager one by more than
    :data:`TRACE_TOLERANCE` of its scale (:func:`relative_difference`), so that the caller runs ``module`` itself."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript's deprecation and shape-constant notes, per call
            frozen = torch.jit.freeze(torch.jit.trace(module, example, check_trace=False).eval())
            try:
                optimised = _fused(frozen, example)
            except Exception as error:  # noqa: BLE001 - no oneDNN Graph here: torch's own fusion passes
                logger.debug("oneDNN Graph cannot compile %s (%s)", type(module).__name__, error)
                frozen = torch.jit.freeze(torch.jit.trace(module, example, check_trace=False).eval())
                optimised = torch.jit.optimize_for_inference(frozen)
            expected, got = module(example), optimised(example)
    except Exception as error:  # noqa: BLE001 - any TorchScript failure only means: run the module eagerly
        logger.debug("running %s eagerly: it cannot be traced (%s)", type(module).__name__, error)
        return None
    got, expected = (got, expected) if isinstance(got, tuple) else ((got,), (expected,))
    difference = max((relative_difference(g, e) for g, e in zip(got, expected, strict=True)), default=float("inf"))
    if not difference <= TRACE_TOLERANCE:
        logger.debug("running %s eagerly: its trace differs by %.2g", type(module).__name__, difference)
        return None
    return optimised
