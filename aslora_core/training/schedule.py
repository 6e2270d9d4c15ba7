"""Round-by-round learning rates: one scale per round, applied to the factors' and the head's rates."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aslora_core.config import LrSchedule


def round_lr_scale(schedule: LrSchedule, round_index: int, rounds: int) -> float:
    """The factor by which round `round_index` (from 0) of `rounds` multiplies the configured rates."""
    if rounds < 1 or not 0 <= round_index < rounds:
        raise ValueError(f"round {round_index} is not one of {rounds} rounds")
    if schedule is LrSchedule.CONSTANT:
        return 1.0
    return (1.0 + math.cos(math.pi * round_index / rounds)) / 2.0


@dataclass(frozen=True)
class LearningRates:
    """The LoRA factors' learning rate in every round of a run."""

    lr: float
    schedule: LrSchedule
    rounds: int

    def factor_lr(self, round_index: int) -> float:
        """The factors' learning rate in round `round_index`."""
        return self.lr * round_lr_scale(self.schedule, round_index, self.rounds)
