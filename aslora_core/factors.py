"""The plain-tensor adapter state, and what a silo sends back (its factors and their statistics)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from aslora_core.factor_choice import Factor


@dataclass(frozen=True)
class LayerFactors:
    """The LoRA factors of one adapted layer: update `dW = scaling * b @ a`."""

    a: torch.Tensor
    b: torch.Tensor

    def factor(self, which: Factor) -> torch.Tensor:
        """The tensor of factor `which`."""
        return self.a if which is Factor.A else self.b

    def replace(self, which: Factor, value: torch.Tensor) -> LayerFactors:
        """A copy with factor `which` replaced by `value`."""
        if which is Factor.A:
            return LayerFactors(a=value, b=self.b)
        return LayerFactors(a=self.a, b=value)

    def product(self) -> torch.Tensor:
        """`b @ a` (without the LoRA scaling)."""
        return self.b @ self.a


@dataclass(frozen=True)
class AdapterState:
    """A LoRA adapter as plain tensors: factors per adapted layer and the always-trained head."""

    layers: Mapping[str, LayerFactors]
    head: Mapping[str, torch.Tensor] = field(default_factory=dict)
    scaling: float = 1.0

    @property
    def layer_names(self) -> list[str]:
        """Adapted layer names in their canonical (sorted) order."""
        return sorted(self.layers)

    def clone(self) -> AdapterState:
        """A deep copy whose tensors share no storage with this one."""
        return AdapterState(
            layers={k: LayerFactors(a=v.a.clone(), b=v.b.clone()) for k, v in self.layers.items()},
            head={k: v.clone() for k, v in self.head.items()},
            scaling=self.scaling,
        )


@dataclass(frozen=True)
class CurvatureStatistics:
    """Secant sums along the steps a silo took on one trained factor in a round (docs/algorithm.md 3.6).

    With ghat_k the noised mean gradient of step k, the step -eta ghat_k (plain SGD) and K = tau - 1
    consecutive pairs: `secant` = sum_k <ghat_{k+1} - ghat_k, -ghat_k>, `step_sq` = sum_k ||dW_k||^2 / eta
    (the steps in dW, through the partner at its global value) and `step_change` =
    sum_{j=0..K} ||ghat_{j-1} - ghat_j||^2 over the steps of those pairs padded with a zero at each end.
    The receiver removes the noise bias with the noise it published (`selection.curvature`).
    """

    secant: float
    step_sq: float
    step_change: float


@dataclass(frozen=True)
class FactorStatistics:
    """DP-released score evidence for one factor of one layer (post-processing of noisy gradients).

    `grad_sq` is the unbiased cross-step estimate of ||g_X||^2 (mean over step pairs k != k' of
    <g_k, g_k'>); `proj_sq` is the same estimate for ||g_B A||^2 (factor B) or ||B g_A||^2 (factor A),
    taken with the partner factor at its global value; `curvature`, for the factor the layer trained
    alone under plain SGD, the secant sums of its steps (None otherwise).
    """

    grad_sq: float
    proj_sq: float
    curvature: CurvatureStatistics | None = None


@dataclass(frozen=True)
class StatisticsNoise:
    """How a silo's released statistics were noised: its local steps and the per-coordinate variance of
    the DP noise on one step's mean gradient, (sigma * C / b)^2 (times the clip groups). A receiver
    computes it from the published settings (`aslora_core.training.statistics.published_noise`) rather
    than taking a silo's word for it."""

    steps: int
    noise_variance: float


@dataclass(frozen=True)
class SiloStatistics:
    """What one silo releases for the selection score: a few scalars per layer and factor."""

    layers: Mapping[str, Mapping[Factor, FactorStatistics]]
    steps: int
    noise_variance: float
    """Per-coordinate variance of the DP noise on one step's mean gradient, (sigma * C / b)^2."""


@dataclass(frozen=True)
class SiloUpdate:
    """What a silo returns after a round: its trained factors, head, and DP-released statistics."""

    silo_id: str
    weight: float
    factors: Mapping[str, Mapping[Factor, torch.Tensor]]
    head: Mapping[str, torch.Tensor]
    statistics: SiloStatistics | None = None
