"""Fixed split ablation: per-layer freedom without adaptivity, two interleaved alternating schedules."""

from __future__ import annotations

from aslora_core.factor_choice import FactorChoice
from aslora_core.policy_traits import FIXED_SPLIT
from aslora_core.selection.base import SelectionPolicy


class FixedSplitPolicy(SelectionPolicy):
    """Round 0 B; from round 1 the first half of the sorted layers B,A,B,... and the rest A,B,A,...

    With an odd number of layers the first half has the extra layer.
    """

    traits = FIXED_SPLIT

    def _choose(self, round_index: int) -> dict[str, FactorChoice]:
        if round_index == 0:
            return self._uniform(FactorChoice.B)
        first_half = (len(self.layer_names) + 1) // 2
        odd = round_index % 2 == 1
        return {
            name: FactorChoice.A if (i < first_half) != odd else FactorChoice.B
            for i, name in enumerate(self.layer_names)
        }
