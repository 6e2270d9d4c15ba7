"""One homogeneous stretch of Gaussian-mechanism releases, the unit of privacy accounting."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aslora_core.mechanism import Mechanism

FULL_BATCH = 1.0
"""The sampling rate of a mechanism that reads every record (an evaluation release)."""


@dataclass(frozen=True)
class PrivacyEvent:
    """`steps` Poisson-sampled Gaussian steps with the same noise multiplier and sampling rate; an
    evaluation release is one full-batch (q = 1) Gaussian mechanism, composed the same way."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    mechanism: Mechanism = Mechanism.DP_SGD
    run_id: str = ""
    """The run the event belongs to, where a ledger keeps runs apart (a silo's lifetime ledger)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0.0):
            raise ValueError(f"noise multiplier must be finite and non-negative, got {self.noise_multiplier}")
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"sample rate must be in (0, 1], got {self.sample_rate}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {self.steps!r}")
        object.__setattr__(self, "mechanism", Mechanism(self.mechanism))
        if self.mechanism is Mechanism.EVALUATION and self.sample_rate != FULL_BATCH:
            raise ValueError(f"an evaluation release reads every record (q = 1), got q = {self.sample_rate}")
