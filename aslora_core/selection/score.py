"""The round-level curvature-aware score of one LoRA factor and the public quantities it needs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aslora_core.factor_choice import Factor
from aslora_core.factors import LayerFactors, SiloStatistics


@dataclass(frozen=True)
class RoundContext:
    """Public constants of one round: step size, LoRA scaling, local steps and DP noise."""

    lr: float
    scaling: float
    steps: float
    """tau, the weighted mean number of local steps sum_i p_i tau_i."""
    noise: float
    """v_eff = sum_i p_i^2 tau_i v_i / tau: per-step variance of the noise in the aggregated factor."""

    @classmethod
    def of_round(
        cls, statistics: Sequence[tuple[float, SiloStatistics]], lr: float, scaling: float
    ) -> RoundContext:
        """The context of a round from the reporting silos' weights, step counts and noise variances."""
        total = math.fsum(weight for weight, _ in statistics)
        if not statistics or total <= 0:
            raise ValueError("a round context needs at least one silo with positive weight")
        steps = math.fsum(weight / total * s.steps for weight, s in statistics)
        noise = (
            math.fsum((weight / total) ** 2 * s.steps * s.noise_variance for weight, s in statistics) / steps
        )
        return cls(lr=lr, scaling=scaling, steps=steps, noise=noise)


@dataclass(frozen=True)
class PartnerGeometry:
    """Public shape and spectrum of the factor that stays frozen while the other trains."""

    free_dim: int
    """Rows of B (m) when B trains, columns of A (n) when A trains."""
    size: int
    """Number of entries of the trained factor."""
    spectrum: tuple[float, ...]
    """Eigenvalues of the partner's r x r Gram matrix, A A^T (B trains) or B^T B (A trains)."""

    @property
    def norm_sq(self) -> float:
        """||A||_F^2 or ||B||_F^2."""
        return math.fsum(self.spectrum)

    @property
    def gram_sq(self) -> float:
        """||A A^T||_F^2 or ||B^T B||_F^2."""
        return math.fsum(mu**2 for mu in self.spectrum)

    @property
    def op_sq(self) -> float:
        """The partner's squared spectral norm."""
        return max(self.spectrum)


def partner_geometry(layer: LayerFactors, factor: Factor) -> PartnerGeometry:
    """The partner's public geometry when `factor` of `layer` trains."""
    partner = (layer.a if factor is Factor.B else layer.b.mT).double()
    trained = layer.factor(factor)
    eigenvalues = torch.linalg.eigvalsh(partner @ partner.mT).clamp_min(0.0)
    return PartnerGeometry(
        free_dim=trained.shape[0] if factor is Factor.B else trained.shape[1],
        size=trained.numel(),
        spectrum=tuple(eigenvalues.tolist()),
    )


@dataclass(frozen=True)
class Evidence:
    """Estimates of ||g_X||^2 and ||g_B A||^2 (or ||B g_A||^2) with their sampling variances."""

    grad_sq: float
    proj_sq: float
    grad_var: float = 0.0
    proj_var: float = 0.0


@dataclass(frozen=True)
class Score:
    """Expected loss decrease per local step from training one factor for a round, and its variance."""

    value: float
    variance: float


def prior_evidence(geometry: PartnerGeometry, scaling: float, gamma: float) -> Evidence:
    """What a gradient G with no preferred direction and per-coordinate variance gamma predicts.

    g_B = s G A^T gives E||g_B||^2 = s^2 gamma m ||A||_F^2 and E||g_B A||^2 = s^2 gamma m ||A A^T||_F^2
    (symmetrically for A with n and B); it is exact for the prior, so its variance is zero.
    """
    unit = scaling**2 * gamma * geometry.free_dim
    return Evidence(grad_sq=unit * geometry.norm_sq, proj_sq=unit * geometry.gram_sq)


def factor_score(
    evidence: Evidence, geometry: PartnerGeometry, context: RoundContext, curvature: float
) -> Score:
    """S = eta ||g||^2 - (eta^2 lambda / 2) s^2 (tau ||proj||^2 + v_eff * free_dim * ||partner||_F^2), with
    lambda = `curvature`.

    The standard deviation adds those of the two random terms (a bound valid for any correlation); the
    curvature is taken as exact.
    """
    penalty = context.lr**2 * curvature / 2 * context.scaling**2
    step_weight = penalty * context.steps
    noise_cost = penalty * context.noise * geometry.free_dim * geometry.norm_sq
    value = context.lr * evidence.grad_sq - step_weight * evidence.proj_sq - noise_cost
    spread = context.lr * math.sqrt(evidence.grad_var) + step_weight * math.sqrt(evidence.proj_var)
    return Score(value=value, variance=spread**2)
