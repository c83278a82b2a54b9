"""The pooling registry, importable without torch: each pooling is one decorated factory ``(config, channels) ->
nn.Module`` (``netvlad.nn`` is imported when it is called), chosen by ``ModelConfig.pool``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from netvlad.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from netvlad.models.model_config import ModelConfig

POOLS: Registry = Registry("pooling")


@POOLS.register("netvlad", help="NetVLAD: K soft-assigned residual sums, intra- and L2-normalised (K*C dims)")
def _netvlad(config: ModelConfig, channels: int) -> nn.Module:
    from netvlad.nn import NetVLAD

    return NetVLAD(config.num_clusters, channels, config.normalize_input, config.parametrization, config.netvlad_bias)


@POOLS.register("gem", help="generalised-mean pooling with a learnable exponent p (C dims)")
def _gem(config: ModelConfig, channels: int) -> nn.Module:
    from netvlad.nn import GeM

    return GeM(channels, p=config.gem_p)


@POOLS.register("max", help="f_max / MAC: each channel's largest activation (C dims)")
def _max(config: ModelConfig, channels: int) -> nn.Module:
    from netvlad.nn import MaxPool

    return MaxPool(channels)


@POOLS.register("avg", help="f_avg: each channel's mean activation (C dims)")
def _avg(config: ModelConfig, channels: int) -> nn.Module:
    from netvlad.nn import AvgPool

    return AvgPool(channels)
