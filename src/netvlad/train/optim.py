"""The optimizer and learning-rate scheduler registries, importable without torch (``netvlad train --help`` lists
them at once): each is one decorated factory, torch imported when it is called.

A new optimizer is one definition here, chosen with ``TrainConfig(optimizer=NAME)`` or ``--optimizer NAME``::

    @OPTIMIZERS.register("adamw", help="AdamW: Adam with decoupled weight decay")
    def _adamw(params, config):
        import torch

        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from netvlad.registry import Registry

if TYPE_CHECKING:
    import torch


class OptimSettings(Protocol):
    """What the factories read (a ``TrainConfig`` has them all): learning rate, its schedule and regularisation."""

    lr: float
    momentum: float
    weight_decay: float
    lr_step: int  # epochs between learning-rate steps
    lr_gamma: float  # factor applied at each step


OPTIMIZERS: Registry = Registry("optimizer", known="choose one of")
SCHEDULERS: Registry = Registry("scheduler", known="choose one of")


@OPTIMIZERS.register("sgd", help="SGD with momentum and weight decay (the paper's)")
def _sgd(params, config: OptimSettings) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


@OPTIMIZERS.register("adam", help="Adam with weight decay")
def _adam(params, config: OptimSettings) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@SCHEDULERS.register("step", help="multiply the learning rate by lr_gamma every lr_step epochs (the paper's)")
def _step(optimizer: torch.optim.Optimizer, config: OptimSettings) -> torch.optim.lr_scheduler.LRScheduler:
    import torch

    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
