"""FFA-LoRA: every layer trains B in every round; A stays frozen at its seeded initialisation."""

from __future__ import annotations

from aslora_core.factor_choice import FactorChoice
from aslora_core.selection.base import SelectionPolicy


class FfaPolicy(SelectionPolicy):
    """Always B."""

    name = "ffa"

    def _choose(self, round_index: int) -> dict[str, FactorChoice]:
        return self._uniform(FactorChoice.B)
