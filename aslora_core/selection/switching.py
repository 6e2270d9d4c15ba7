"""Exponential smoothing of scores across rounds and the standard-error switching rule."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aslora_core.selection.score import Score


@dataclass(frozen=True)
class Smoothed:
    """The EMA of a factor's score over rounds and the variance of that EMA."""

    mean: float
    variance: float

    @classmethod
    def first(cls, score: Score) -> Smoothed:
        """The EMA after one observation."""
        return cls(mean=score.value, variance=score.variance)

    def updated(self, score: Score, ema: float) -> Smoothed:
        """Fold in one more round, treated as independent of the past.

        The variance recursion tends to (1 - ema) / (1 + ema) times a constant per-round variance.
        """
        return Smoothed(
            mean=ema * self.mean + (1.0 - ema) * score.value,
            variance=ema**2 * self.variance + (1.0 - ema) ** 2 * score.variance,
        )


def should_switch(current: Smoothed, other: Smoothed, z: float) -> bool:
    """Whether the other factor's smoothed score beats the current one by more than z standard errors.

    The two factors' scores come from independent noise, so their variances add. With zero variance
    (the `norm` estimator) this switches on the sign of the difference.
    """
    return other.mean - current.mean > z * math.sqrt(current.variance + other.variance)
