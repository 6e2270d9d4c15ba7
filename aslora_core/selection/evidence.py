"""Pooling the silos' cross-step gradient statistics, with closed-form standard errors."""

from __future__ import annotations

import math
from collections.abc import Sequence

from aslora_core.factors import Factor, FactorStatistics, SiloStatistics
from aslora_core.selection.score import Evidence, PartnerGeometry

MIN_STEPS = 2
"""The cross-step estimator pairs distinct local steps, so it needs at least two."""


def cross_step_variance(
    signal_sq: float, noise: float, steps: int, coupling: float, noise_dim: float
) -> float:
    """Variance of the mean over step pairs k != k' of <P g_k, P g_k'>, with g_k = mu + N(0, noise I).

    4 v ||P mu||^2 coupling / tau + 2 v^2 noise_dim / (tau (tau - 1)): `coupling` bounds
    ||P^T P mu||^2 / ||P mu||^2 (1 for the plain gradient, the partner's squared spectral norm for a
    projection) and `noise_dim` is E<P z, P z'>^2 / v^2 for independent noise draws z, z' (the
    factor's entries for the plain gradient, free_dim * ||Gram||_F^2 for a projection).
    """
    tau = float(steps)
    return 4.0 * noise * max(signal_sq, 0.0) * coupling / tau + 2.0 * noise**2 * noise_dim / (
        tau * (tau - 1.0)
    )


def pooled_evidence(
    statistics: Sequence[tuple[float, SiloStatistics]], layer: str, factor: Factor, geometry: PartnerGeometry
) -> Evidence | None:
    """The weighted mean of the silos' estimates for one layer and factor; None when no silo has one.

    Weights are renormalised over the silos that reported this layer and factor, and each silo's
    variance uses the pooled estimate as its ||mu||^2 (clipped at zero): silos are independent, so the
    variances add with squared weights.
    """
    found: list[tuple[float, SiloStatistics, FactorStatistics]] = []
    for weight, silo in statistics:
        entry = silo.layers.get(layer, {}).get(factor)
        if entry is not None and silo.steps >= MIN_STEPS:
            found.append((weight, silo, entry))
    total = math.fsum(weight for weight, _, _ in found)
    if not found or total <= 0:
        return None
    grad_sq = math.fsum(w / total * e.grad_sq for w, _, e in found)
    proj_sq = math.fsum(w / total * e.proj_sq for w, _, e in found)
    grad_var = math.fsum(
        (w / total) ** 2 * cross_step_variance(grad_sq, s.noise_variance, s.steps, 1.0, geometry.size)
        for w, s, _ in found
    )
    proj_noise_dim = geometry.free_dim * geometry.gram_sq
    proj_var = math.fsum(
        (w / total) ** 2
        * cross_step_variance(proj_sq, s.noise_variance, s.steps, geometry.op_sq, proj_noise_dim)
        for w, s, _ in found
    )
    return Evidence(grad_sq=grad_sq, proj_sq=proj_sq, grad_var=grad_var, proj_var=proj_var)
