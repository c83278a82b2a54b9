"""The traced CPU copy: compiled by oneDNN Graph (fused partitions in the graph that runs), within 1e-5 of the eager
model, TorchScript's fusion switch left as it was; torch's own passes where oneDNN Graph fails."""

from __future__ import annotations

import re

import pytest
import torch

from netvlad.models import ModelConfig, PlaceModel, Preprocessing, tracing
from netvlad.models.folding import fold_batch_norms
from netvlad.models.tracing import traced_for_inference


@pytest.fixture
def folded() -> torch.nn.Module:
    """MobileNetV2 (random weights, seeded) + GeM, batch norms folded, channels_last."""
    torch.manual_seed(0)
    config = ModelConfig(backbone="mobilenet_v2", pool="gem", preprocessing=Preprocessing("fixed", (64, 96)))
    return fold_batch_norms(PlaceModel(config, pretrained=False).eval()).to(memory_format=torch.channels_last)


@pytest.fixture
def example() -> torch.Tensor:
    return torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=torch.channels_last)


def test_the_trace_runs_fused_by_onednn_graph(folded, example, one_thread):
    before = torch.jit.onednn_fusion_enabled()
    traced = traced_for_inference(folded, example)
    assert torch.jit.onednn_fusion_enabled() == before
    with torch.inference_mode():
        got = traced(example)
        graph = str(torch.jit.last_executed_optimized_graph())
        expected = folded(example)
    assert re.search(r"prim::oneDNNFusionGroup", graph)
    assert (got - expected).abs().max() <= tracing.TRACE_TOLERANCE
    with torch.inference_mode():
        assert torch.equal(traced(example), got)  # the compiled graph from its first call on: same bits


def test_without_onednn_graph_torch_s_own_fusion_runs(folded, example, one_thread, monkeypatch):
    def fails(frozen, example):
        raise RuntimeError("no oneDNN Graph")

    monkeypatch.setattr(tracing, "_fused", fails)
    traced = traced_for_inference(folded, example)
    with torch.inference_mode():
        got, expected = traced(example), folded(example)
        graph = str(torch.jit.last_executed_optimized_graph())
    assert "oneDNNFusionGroup" not in graph
    assert (got - expected).abs().max() <= tracing.TRACE_TOLERANCE
