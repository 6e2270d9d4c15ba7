"""PRV epsilon (Gopi, Lee and Wutschitz 2021, as Opacus' PRV accountant computes it) from Opacus' PRV
building blocks, with the RDP bound that sizes the discretization domain taken from the cached per-step
RDP: Opacus' accountant recomputes that RDP on every call, nine tenths of its time."""

from __future__ import annotations

import numpy as np
from opacus.accountants.analysis.prv import (
    Domain,
    PoissonSubsampledGaussianPRV,
    TruncatedPrivacyRandomVariable,
    compose_heterogeneous,
    discretize,
)

from aslora_core.privacy.rdp import OPACUS_RDP_ORDERS, Composition, rdp_epsilon

DOMAIN_MARGIN = 3.0
"""Added to the RDP bound on the privacy loss to give the domain's half-width (the paper's remark 5.6, as
Opacus implements it)."""
WHOLE_DELTA_SHARE = 4
"""The whole composition's loss is bounded at delta_error / WHOLE_DELTA_SHARE."""
STEP_DELTA_SHARE = 8
"""One step's loss is bounded at delta_error / (STEP_DELTA_SHARE * total steps)."""
MESH_LOG_NUMERATOR = 12.0
"""The mesh is eps_error / sqrt(total steps * log(MESH_LOG_NUMERATOR / delta_error) / 2)."""


def _domain_half_width(composition: Composition, eps_error: float, delta_error: float) -> float:
    """How far from zero the privacy loss is tracked: a bound that it stays within, but for an error
    within the budgeted delta_error, at the whole composition and at any single step."""
    total_steps = sum(steps for _, _, steps in composition)
    bound = rdp_epsilon(composition, delta_error / WHOLE_DELTA_SHARE, OPACUS_RDP_ORDERS)
    for sigma, q, _ in composition:
        one_step = rdp_epsilon(
            ((sigma, q, 1),), delta_error / (STEP_DELTA_SHARE * total_steps), OPACUS_RDP_ORDERS
        )
        bound = max(bound, one_step)
    return max(bound, eps_error) + DOMAIN_MARGIN


def prv_epsilon(composition: Composition, delta: float, *, eps_error: float, delta_error: float) -> float:
    """The upper end of the PRV accountant's epsilon interval at `delta` for a non-empty composition
    (every sigma positive), bit for bit what Opacus' PRV accountant reports for it."""
    total_steps = sum(steps for _, _, steps in composition)
    half_width = _domain_half_width(composition, eps_error, delta_error)
    mesh = eps_error / np.sqrt(total_steps * np.log(MESH_LOG_NUMERATOR / delta_error) / 2)
    domain = Domain.create_aligned(-half_width, half_width, mesh)
    # A full-batch release (q = 1) has the PRV take log(1 - q): minus infinity, as its comparisons expect.
    with np.errstate(divide="ignore"):
        discrete = [
            discretize(
                TruncatedPrivacyRandomVariable(
                    PoissonSubsampledGaussianPRV(q, sigma), domain.t_min, domain.t_max
                ),
                domain,
            )
            for sigma, q, _ in composition
        ]
        composed = compose_heterogeneous(dprvs=discrete, num_self_compositions=[s for *_, s in composition])
        _, _, upper = composed.compute_epsilon(delta, delta_error, eps_error)
    return float(upper)
