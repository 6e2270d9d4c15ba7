"""Per-silo privacy planning: each silo's sampling rate and the noise multiplier it is given."""

from __future__ import annotations

from collections.abc import Mapping

from aslora_core.config import PrivacySettings
from aslora_core.privacy.analysis import noise_multiplier_for


def expected_sample_rate(batch_size: int, num_examples: int) -> float:
    """Poisson sampling rate q = b / N, with the expected batch b capped at the N records a silo has."""
    if batch_size < 1 or num_examples < 1:
        raise ValueError(f"batch size and record count must be positive, got {batch_size}, {num_examples}")
    return min(batch_size, num_examples) / num_examples


def plan_noise_multipliers(
    privacy: PrivacySettings, total_steps: int, sample_rates: Mapping[str, float]
) -> dict[str, float]:
    """Each silo's sigma: the configured one, or the one reaching the target epsilon at its own rate."""
    if privacy.noise_multiplier is not None:
        return dict.fromkeys(sample_rates, privacy.noise_multiplier)
    if privacy.target_epsilon is None:
        raise ValueError("privacy settings give neither a noise multiplier nor a target epsilon")
    return {
        silo: noise_multiplier_for(
            privacy.target_epsilon, privacy.delta, rate, total_steps, privacy.accountant
        )
        for silo, rate in sample_rates.items()
    }
