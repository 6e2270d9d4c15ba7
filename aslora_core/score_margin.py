"""The score margin of factor A over factor B in standard errors: the quantity AS-LoRA's switching rule
compares with z, shown by the report's and the dashboard's layer x round maps (no numpy, no plotting)."""

from __future__ import annotations

import math

MARGIN_LIMIT = 5.0
"""Margins are shown clipped to +-this many standard errors (a margin without spread, as the `norm`
estimator's, is shown at the limit of its sign)."""


def score_margin(mean_a: float, error_a: float, mean_b: float, error_b: float) -> float:
    """(S_A - S_B) / sqrt(se_A^2 + se_B^2), clipped to +-MARGIN_LIMIT."""
    difference = mean_a - mean_b
    spread = math.hypot(error_a, error_b)
    if spread <= 0:
        return math.copysign(MARGIN_LIMIT, difference) if difference else 0.0
    return max(-MARGIN_LIMIT, min(MARGIN_LIMIT, difference / spread))
