"""Which LoRA factors each local DP-SGD step of a round updates, and at what multiple of the factor rate."""

from __future__ import annotations

from dataclasses import dataclass

from aslora_core.config import TrainingSettings
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.policy_traits import PolicyTraits


@dataclass(frozen=True)
class FactorSteps:
    """Every step updates each layer's selected factors; or, `alternate` (LA-LoRA), a layer training both
    updates B on even steps and A on odd ones, B at the factor learning rate and A at it over `lr_ratio`.

    B goes first: it starts at zero, so A's gradient (which B multiplies) is zero at a run's first step.
    """

    alternate: bool = False
    lr_ratio: float = 1.0

    def __post_init__(self) -> None:
        if not self.lr_ratio > 0:
            raise ValueError(f"the B/A learning-rate ratio must be positive, got {self.lr_ratio}")

    @classmethod
    def of(cls, traits: PolicyTraits, training: TrainingSettings) -> FactorSteps:
        """The steps a run of the policy with `traits` takes, at the plan's B/A learning-rate ratio."""
        if not traits.alternates_factors:
            return cls()
        return cls(alternate=True, lr_ratio=training.alternation_lr_ratio)

    def stepped(self, choice: FactorChoice, step: int) -> tuple[Factor, ...]:
        """The factors a layer that trains `choice` this round updates at local step `step` (from 0)."""
        if not self.alternate or choice is not FactorChoice.BOTH:
            return choice.factors
        return (Factor.B,) if step % 2 == 0 else (Factor.A,)

    def lr_multiplier(self, factor: Factor) -> float:
        """The factor's learning rate over the run's factor learning rate."""
        return 1.0 / self.lr_ratio if self.alternate and factor is Factor.A else 1.0


EVERY_SELECTED = FactorSteps()
"""Every step updates each layer's selected factors: every policy but an alternating one."""
