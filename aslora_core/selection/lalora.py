"""LA-LoRA: both factors of every layer in every round, alternated within the round step by step."""

from __future__ import annotations

from aslora_core.factor_choice import FactorChoice
from aslora_core.policy_traits import LALORA
from aslora_core.selection.base import SelectionPolicy


class LaloraPolicy(SelectionPolicy):
    """Both factors everywhere, separate means; the silos step B and A in turn (`FactorSteps`)."""

    traits = LALORA

    def _choose(self, round_index: int) -> dict[str, FactorChoice]:
        return self._uniform(FactorChoice.BOTH)
