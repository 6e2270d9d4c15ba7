"""Stateless privacy math: epsilon of a step history and the noise multiplier for a target epsilon."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

from opacus.accountants.utils import get_noise_multiplier
from threadpoolctl import threadpool_limits

from aslora_core.config import AccountantKind
from aslora_core.privacy.events import PrivacyEvent
from aslora_core.privacy.prv import prv_epsilon
from aslora_core.privacy.rdp import RDP_ORDERS, Composition, rdp_epsilon

EPSILON_CACHE_SIZE = 4096
"""Distinct (composition, delta, accountant) whose epsilon is kept. In a round the coordinator computes
two per silo (its budget check's planned history, then the same history once charged, which hits), so a
round of up to half this many silos keeps its hits; a silo's task check and its charge likewise."""
DEFAULT_EPSILON_TOLERANCE = 0.01
"""How far below the target the calibrated noise multiplier may leave epsilon."""
PRV_EPS_ERROR = 0.01
"""Absolute error allowed in the PRV accountant's epsilon; it reports the upper end of its interval."""
PRV_DELTA_ERROR_FRACTION = 1e-3
"""Error allowed in delta by the PRV accountant, as a fraction of delta."""
ACCOUNTING_BLAS_THREADS = 1
"""BLAS threads of the accountants' math: PRV's products round differently with the thread count, and a
silo (often run with one thread) and the coordinator must reach the same float for the same events."""


def _accountant_options(kind: AccountantKind, delta: float) -> dict[str, Any]:
    if kind is AccountantKind.RDP:
        return {"alphas": list(RDP_ORDERS)}
    return {"eps_error": PRV_EPS_ERROR, "delta_error": delta * PRV_DELTA_ERROR_FRACTION}


def _check_delta(delta: float) -> None:
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


def _composed(history: Sequence[PrivacyEvent]) -> Composition:
    """The (sigma, q, steps) to compose: the steps taken at each distinct (sigma, q), in sorted order.

    Composition is commutative, so epsilon depends only on these counts; summing them first makes it the
    same float however the steps were grouped into events or ordered (PRV's numerical composition and
    RDP's float sums otherwise differ in the last bits, e.g. between a silo's ledger and a simulation).
    """
    steps: dict[tuple[float, float], int] = {}
    for event in history:
        if event.steps > 0:
            key = (event.noise_multiplier, event.sample_rate)
            steps[key] = steps.get(key, 0) + event.steps
    return tuple((sigma, q, count) for (sigma, q), count in sorted(steps.items()))


def epsilon_spent(history: Sequence[PrivacyEvent], delta: float, kind: AccountantKind) -> float:
    """Epsilon at `delta` after all the steps in `history`, by the given accountant."""
    _check_delta(delta)
    kind = AccountantKind(kind)
    composition = _composed(history)
    if not composition:
        return 0.0
    if any(sigma == 0.0 for sigma, _, _ in composition):
        return math.inf
    return _composed_epsilon(composition, delta, kind)


@functools.lru_cache(maxsize=EPSILON_CACHE_SIZE)
def _composed_epsilon(composition: Composition, delta: float, kind: AccountantKind) -> float:
    """Epsilon at `delta` of a non-empty composition whose every sigma and step count is positive; kept,
    since a PRV epsilon costs tens of milliseconds and the same history is often asked for twice (a budget
    check, then the charge it let through)."""
    if kind is AccountantKind.RDP:
        return rdp_epsilon(composition, delta)
    with threadpool_limits(limits=ACCOUNTING_BLAS_THREADS, user_api="blas"):
        return prv_epsilon(
            composition, delta, eps_error=PRV_EPS_ERROR, delta_error=delta * PRV_DELTA_ERROR_FRACTION
        )


def noise_multiplier_for(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    kind: AccountantKind,
    *,
    epsilon_tolerance: float = DEFAULT_EPSILON_TOLERANCE,
) -> float:
    """Noise multiplier whose `steps` steps at `sample_rate` spend the target epsilon (to the tolerance)."""
    _check_delta(delta)
    kind = AccountantKind(kind)
    if not (math.isfinite(target_epsilon) and target_epsilon > 0.0):
        raise ValueError(f"target epsilon must be finite and positive, got {target_epsilon}")
    if not epsilon_tolerance > 0.0:
        raise ValueError(f"epsilon tolerance must be positive, got {epsilon_tolerance}")
    PrivacyEvent(noise_multiplier=0.0, sample_rate=sample_rate, steps=steps)  # validates q and steps
    if steps == 0:
        raise ValueError("steps must be at least 1 to calibrate a noise multiplier")
    # Opacus evaluates epsilon with the same accountant and options as epsilon_spent, so the returned
    # sigma never spends more than the target by epsilon_spent's own measure.
    with threadpool_limits(limits=ACCOUNTING_BLAS_THREADS, user_api="blas"):
        sigma = get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=kind.value,
            epsilon_tolerance=epsilon_tolerance,
            **_accountant_options(kind, delta),
        )
    return float(sigma)
