"""Pooling the silos' cross-step gradient statistics, with closed-form standard errors."""

from __future__ import annotations

import math
from collections.abc import Sequence

from aslora_core.factor_choice import Factor
from aslora_core.factors import FactorStatistics, SiloStatistics
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


def noise_recoil(geometry: PartnerGeometry, steps: int, noise: float, rate: float) -> tuple[float, float]:
    """How far a trained factor's own DP noise pulls its cross-step estimates down: (grad, proj).

    In the quadratic model a B step's noise zeta_k changes every later gradient by
    -rate zeta_k P (I - rate P)^(j-1), j steps on, with P = A A^T and rate = eta lambda s^2. Averaged over
    ordered step pairs that is v free_dim sum_l rate mu_l w_l for ||g_B||^2 and v free_dim
    sum_l rate mu_l^2 w_l for ||g_B A||^2 (mu_l the eigenvalues of P, w_l the pairs' mean decay).
    Symmetrically for A with P = B^T B.
    """
    if rate == 0.0 or noise == 0.0:
        return 0.0, 0.0
    pairs = steps * (steps - 1) / 2
    grad = proj = 0.0
    for mu in geometry.spectrum:
        decay = 1.0 - rate * mu
        mean_decay = math.fsum((steps - j) * decay ** (j - 1) for j in range(1, steps)) / pairs
        grad += rate * mu * mean_decay
        proj += rate * mu**2 * mean_decay
    scale = noise * geometry.free_dim
    return scale * grad, scale * proj


def pooled_evidence(
    statistics: Sequence[tuple[float, SiloStatistics]],
    layer: str,
    factor: Factor,
    geometry: PartnerGeometry,
    recoil_rate: float = 0.0,
) -> Evidence | None:
    """The weighted mean of the silos' estimates for one layer and factor; None when no silo has one.

    `recoil_rate` is eta lambda s^2 when this factor was the one trained in the round (0 otherwise):
    its estimates are then corrected by `noise_recoil`. Weights are renormalised over the silos that
    reported this layer and factor, and each silo's variance uses the pooled estimate as its ||mu||^2
    (clipped at zero): silos are independent, so the variances add with squared weights.
    """
    found: list[tuple[float, SiloStatistics, FactorStatistics]] = []
    for weight, silo in statistics:
        entry = silo.layers.get(layer, {}).get(factor)
        if entry is not None and silo.steps >= MIN_STEPS:
            found.append((weight, silo, entry))
    total = math.fsum(weight for weight, _, _ in found)
    if not found or total <= 0:
        return None
    # the recoil is linear in the noise variance: compute it once per distinct step count
    unit_recoil = {
        steps: noise_recoil(geometry, steps, 1.0, recoil_rate) for steps in {s.steps for _, s, _ in found}
    }
    grad_terms, proj_terms = [], []
    for w, s, e in found:
        grad_recoil, proj_recoil = unit_recoil[s.steps]
        grad_terms.append(w / total * (e.grad_sq + s.noise_variance * grad_recoil))
        proj_terms.append(w / total * (e.proj_sq + s.noise_variance * proj_recoil))
    grad_sq, proj_sq = math.fsum(grad_terms), math.fsum(proj_terms)
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
