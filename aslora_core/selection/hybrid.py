"""Empirical-Bayes shrinkage of per-layer gradient evidence toward the isotropic (`norm`) prior."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import TypeVar

from aslora_core.selection.score import Evidence

Key = TypeVar("Key", bound=Hashable)


def _posterior(value: float, variance: float, prior: float, prior_var: float) -> tuple[float, float]:
    """Inverse-variance combination of an estimate and a prior, degenerate variances included."""
    if prior_var <= 0.0:
        return prior, 0.0
    if variance <= 0.0:
        return value, 0.0
    weight = prior_var / (prior_var + variance)
    return weight * value + (1.0 - weight) * prior, weight * variance


def _shrink(
    found: Mapping[Key, tuple[float, float]], units: Mapping[Key, float], gamma: float, gamma_var: float
) -> dict[Key, tuple[float, float]]:
    """Posterior (mean, variance) of every key in `units`, shrinking `found` toward gamma * unit.

    The prior for key l is gamma * u_l with variance (omega gamma u_l)^2 + u_l^2 Var(gamma): a relative
    spread omega across layers, fitted by moments (what the observed scatter exceeds the sampling
    variances by), plus the uncertainty of the pooled scale itself.
    """
    excess = math.fsum((value - gamma * units[k]) ** 2 - var for k, (value, var) in found.items())
    reach = math.fsum((gamma * units[k]) ** 2 for k in found)
    omega_sq = max(excess, 0.0) / reach if reach > 0 else 0.0
    result: dict[Key, tuple[float, float]] = {}
    for key, unit in units.items():
        prior, prior_var = gamma * unit, (omega_sq * gamma**2 + gamma_var) * unit**2
        result[key] = _posterior(*found[key], prior, prior_var) if key in found else (prior, prior_var)
    return result


def shrink_toward_prior(
    evidence: Mapping[Key, Evidence | None], units: Mapping[Key, Evidence], fallback_gamma: float
) -> dict[Key, Evidence]:
    """Combine the evidence of every key of `units` with the prior gamma * units[key], gamma pooled.

    `units` is the prior at gamma = 1. gamma is the ratio of summed gradient evidence to summed units,
    clipped at zero; with no usable evidence the prior uses `fallback_gamma` with no spread.
    """
    found = {k: e for k in units if (e := evidence.get(k)) is not None}
    unit_total = math.fsum(units[k].grad_sq for k in found)
    if unit_total <= 0:
        return {k: found[k] if k in found else _scaled(u, fallback_gamma) for k, u in units.items()}
    gamma = max(math.fsum(e.grad_sq for e in found.values()) / unit_total, 0.0)
    gamma_var = math.fsum(e.grad_var for e in found.values()) / unit_total**2
    grads = _shrink(
        {k: (e.grad_sq, e.grad_var) for k, e in found.items()},
        {k: u.grad_sq for k, u in units.items()},
        gamma,
        gamma_var,
    )
    projs = _shrink(
        {k: (e.proj_sq, e.proj_var) for k, e in found.items()},
        {k: u.proj_sq for k, u in units.items()},
        gamma,
        gamma_var,
    )
    return {
        k: Evidence(grad_sq=grads[k][0], proj_sq=projs[k][0], grad_var=grads[k][1], proj_var=projs[k][1])
        for k in units
    }


def _scaled(unit: Evidence, gamma: float) -> Evidence:
    """The prior at scale gamma, exact (zero variance)."""
    return Evidence(grad_sq=gamma * unit.grad_sq, proj_sq=gamma * unit.proj_sq)
