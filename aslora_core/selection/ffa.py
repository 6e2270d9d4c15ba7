"""FFA-LoRA: every layer trains B in every round; A stays frozen at its seeded initialisation."""

from __future__ import annotations

from aslora_core.factor_choice import FactorChoice
from aslora_core.policy_traits import FFA
from aslora_core.selection.base import SelectionPolicy


class FfaPolicy(SelectionPolicy):
    """Always B."""

    traits = FFA

    def _choose(self, round_index: int) -> dict[str, FactorChoice]:
        return self._uniform(FactorChoice.B)
