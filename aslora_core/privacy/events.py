"""One homogeneous stretch of DP-SGD steps, the unit of privacy accounting."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PrivacyEvent:
    """`steps` Poisson-sampled Gaussian steps with the same noise multiplier and sampling rate."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    run_id: str = ""
    """The run the steps were taken in, where a ledger keeps runs apart (a silo's lifetime ledger)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0.0):
            raise ValueError(f"noise multiplier must be finite and non-negative, got {self.noise_multiplier}")
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"sample rate must be in (0, 1], got {self.sample_rate}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {self.steps!r}")
