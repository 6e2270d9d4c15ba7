"""FedIT: both factors trained and averaged separately (the inexact plain federated LoRA baseline)."""

from __future__ import annotations

from aslora_core.factor_choice import FactorChoice
from aslora_core.policy_traits import FEDIT
from aslora_core.selection.base import SelectionPolicy


class FeditPolicy(SelectionPolicy):
    """Both factors everywhere, separate means."""

    traits = FEDIT

    def _choose(self, round_index: int) -> dict[str, FactorChoice]:
        return self._uniform(FactorChoice.BOTH)
