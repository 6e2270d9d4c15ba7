"""Opacus' RDP arithmetic for runs of sampled Gaussian steps, with each (sigma, q)'s per-step RDP computed
once: the RDP accountant and the PRV accountant's domain bound both compose it every round."""

from __future__ import annotations

import functools

import numpy as np
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

EXTRA_RDP_ORDERS: tuple[int, ...] = (128, 256, 512, 1024)
"""Orders beyond Opacus' defaults (which stop at 63), as Google's dp-accounting uses: without them the
bound is loose when epsilon is small (early rounds, large sigma), where the best order is large."""
OPACUS_RDP_ORDERS: tuple[float, ...] = tuple(RDPAccountant.DEFAULT_ALPHAS)
"""The orders Opacus' RDP accountant uses when given none (as its PRV accountant's domain bound does)."""
RDP_ORDERS: tuple[float, ...] = (*OPACUS_RDP_ORDERS, *EXTRA_RDP_ORDERS)
RDP_CACHE_SIZE = 4096
"""Distinct (sigma, q) pairs whose per-step RDP is kept: one or a few per silo."""

Composition = tuple[tuple[float, float, int], ...]
"""The (sigma, q, steps) of each accounted run of steps, in order: all an accountant reads of a history."""


@functools.lru_cache(maxsize=RDP_CACHE_SIZE)
def _rdp_per_step(noise_multiplier: float, sample_rate: float) -> tuple[float, ...]:
    """RDP of one step of the sampled Gaussian mechanism at every order of RDP_ORDERS."""
    rdp = rdp_analysis.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(RDP_ORDERS)
    )
    return tuple(float(value) for value in np.atleast_1d(rdp))


def rdp_epsilon(composition: Composition, delta: float, orders: tuple[float, ...] = RDP_ORDERS) -> float:
    """Epsilon at `delta` of a non-empty composition (every sigma positive) over `orders`, RDP_ORDERS or
    the first of them: Opacus' RDP accountant's own arithmetic (per-step RDP times steps, summed in order),
    so the figure is bit for bit the one it gives."""
    count = len(orders)
    if orders != RDP_ORDERS[:count]:
        raise ValueError("the orders must be the first of RDP_ORDERS")
    rdp = sum([np.asarray(_rdp_per_step(sigma, q)[:count]) * steps for sigma, q, steps in composition])
    epsilon, _ = rdp_analysis.get_privacy_spent(orders=list(orders), rdp=rdp, delta=delta)
    return float(epsilon)
