"""RoLoRA: all layers train B in even rounds and A in odd rounds (one schedule tied across layers)."""

from __future__ import annotations

from aslora_core.factor_choice import FactorChoice
from aslora_core.policy_traits import ROLORA
from aslora_core.selection.base import SelectionPolicy


class RoloraPolicy(SelectionPolicy):
    """B, A, B, A, ... for every layer at once."""

    traits = ROLORA

    def _choose(self, round_index: int) -> dict[str, FactorChoice]:
        return self._uniform(FactorChoice.B if round_index % 2 == 0 else FactorChoice.A)
