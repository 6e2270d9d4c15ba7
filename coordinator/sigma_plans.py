"""The noise multiplier planned for each sample rate of a run: calibrated once per rate, kept across a
coordinator restart, so that silos registering again are admitted at once."""

from __future__ import annotations

import threading

from aslora_core.config import PrivacySettings
from aslora_core.privacy.planning import plan_noise_multipliers


class SigmaPlans:
    """The sigma of each sample rate q (it depends on q only, for the run's privacy and steps)."""

    def __init__(self, privacy: PrivacySettings, total_steps: int) -> None:
        self._privacy = privacy
        self._total_steps = total_steps
        self._lock = threading.Lock()
        self._sigmas: dict[float, float] = {}

    def sigma_for(self, rate: float) -> float:
        """The sigma planned for rate q, planned now when it is new (outside the lock: it takes a while)."""
        with self._lock:
            sigma = self._sigmas.get(rate)
        if sigma is None:
            sigma = plan_noise_multipliers(self._privacy, self._total_steps, {"silo": rate})["silo"]
        with self._lock:
            self._sigmas[rate] = sigma
        return sigma

    def restore(self, rate: float, sigma: float) -> None:
        """Put back the sigma a checkpointed silo was planned at."""
        with self._lock:
            self._sigmas[rate] = sigma
