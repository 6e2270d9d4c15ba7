"""SVD aggregation: both factors trained, the mean product re-factored by its truncated SVD."""

from __future__ import annotations

from aslora_core.factor_choice import FactorChoice
from aslora_core.policy_traits import SVD
from aslora_core.selection.base import SelectionPolicy


class SvdPolicy(SelectionPolicy):
    """Both factors everywhere, rank-r SVD of sum_i p_i B_i A_i."""

    traits = SVD

    def _choose(self, round_index: int) -> dict[str, FactorChoice]:
        return self._uniform(FactorChoice.BOTH)
