"""SeqNet training settings; imports neither numpy nor torch, so the CLI shows their defaults at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SeqNetTraining:
    """SeqNet training: ``length`` L (causal windows ending at the trained frame), ``output_dim`` D', ``kernel``,
    ``epochs`` over ``epoch_queries`` random queries, Adam at ``lr``, ``batch`` tuples per step; mining as the
    paper's (``margin``, ``num_negatives`` hardest of ``negative_samples`` random definite negatives), refreshed
    every epoch from the current model's descriptors; ``pca_dim`` P > 0: frames first projected on the top P
    principal components of up to ``pca_samples`` training descriptors (fitted once, kept in the model)."""

    length: int = 10
    output_dim: int = 512
    kernel: int = 5
    pca_dim: int = 0
    pca_samples: int = 2000
    epochs: int = 5
    epoch_queries: int = 1000
    lr: float = 1e-3
    batch: int = 16
    margin: float = 0.1
    num_negatives: int = 10
    negative_samples: int = 1000
    seed: int = 0
