"""The interface every selection policy implements: which factor each layer trains in a round."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar, Self

from aslora_core.config import ScoreSettings
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import AdapterState, SiloStatistics
from aslora_core.policy_traits import PolicyTraits
from aslora_core.selection.curvature import CurvatureUse
from aslora_core.selection.switching import Smoothed

POLICY_KEY = "policy"
"""The state_dict entry that names the policy, checked on load."""


class SelectionPolicy(ABC):
    """Chooses, each round, what every adapted layer trains; stateful policies learn from `observe`."""

    traits: ClassVar[PolicyTraits]
    """Its name, aggregation rule and what else the run must do for it (`aslora_core.policy_traits`)."""

    def __init__(self, layer_names: Sequence[str]) -> None:
        if not layer_names or len(set(layer_names)) != len(layer_names):
            raise ValueError("a policy needs a non-empty list of distinct layer names")
        self.layer_names = sorted(layer_names)

    @property
    def name(self) -> str:
        """The policy's registered name."""
        return self.traits.name

    @classmethod
    def create(cls, layer_names: Sequence[str], score: ScoreSettings, seed: int, scaling: float) -> Self:
        """Build the policy from the run's settings; policies ignore what they do not need."""
        del score, seed, scaling
        return cls(layer_names)

    def select(self, round_index: int, state: AdapterState) -> dict[str, FactorChoice]:
        """What each layer of `state` trains in round `round_index`."""
        if round_index < 0:
            raise ValueError(f"round index must be non-negative, got {round_index}")
        if state.layer_names != self.layer_names:
            raise ValueError(
                f"{self.name}: adapter layers {state.layer_names} != policy layers {self.layer_names}"
            )
        return self._choose(round_index)

    @abstractmethod
    def _choose(self, round_index: int) -> dict[str, FactorChoice]:
        """The selection of round `round_index` for `self.layer_names`."""

    def observe(
        self,
        round_index: int,
        state: AdapterState,
        statistics: Sequence[tuple[float, SiloStatistics]],
        lr: float,
    ) -> None:
        """Learn from round `round_index` once aggregated (`state` is the new global adapter).

        `statistics` holds (weight, statistics) of each reporting silo in silo-id order. Fixed policies
        ignore it.
        """
        del round_index, state, statistics, lr

    def smoothed_scores(self) -> dict[str, dict[Factor, Smoothed]]:
        """Each layer's smoothed score per factor as of the last `observe` (what chose the next round's
        factors); empty for policies that do not score."""
        return {}

    def curvature_uses(self) -> dict[str, dict[Factor, CurvatureUse]]:
        """Each layer's curvature per factor as the score uses it after the last `observe`; empty for
        policies that do not score."""
        return {}

    def state_dict(self) -> dict[str, object]:
        """JSON-serializable state from which `load_state_dict` resumes the exact same future selections."""
        return {POLICY_KEY: self.name}

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore what `state_dict` returned."""
        if state.get(POLICY_KEY) != self.name:
            raise ValueError(f"state of policy {state.get(POLICY_KEY)!r} cannot be loaded into {self.name!r}")

    def _uniform(self, choice: FactorChoice) -> dict[str, FactorChoice]:
        """Every layer gets `choice`."""
        return dict.fromkeys(self.layer_names, choice)
