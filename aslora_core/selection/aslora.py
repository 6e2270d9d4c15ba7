"""AS-LoRA: each layer trains, each round, the factor with the better smoothed curvature-aware score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Self

from aslora_core.config import ScoreSettings
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import AdapterState, SiloStatistics
from aslora_core.policy_traits import ASLORA
from aslora_core.selection.base import SelectionPolicy
from aslora_core.selection.curvature import CurvatureTracker, CurvatureUse
from aslora_core.selection.estimators import make_estimator
from aslora_core.selection.switching import Smoothed, should_switch

_OTHER = {Factor.A: Factor.B, Factor.B: Factor.A}


class AsloraPolicy(SelectionPolicy):
    """Round 0 trains B; afterwards a layer keeps its factor until the other's EMA score wins by z SEs."""

    traits = ASLORA

    def __init__(self, layer_names: Sequence[str], score: ScoreSettings, scaling: float) -> None:
        super().__init__(layer_names)
        self.settings = score
        self.estimator = make_estimator(score, scaling)
        self.curvature = CurvatureTracker(score)
        self.current = dict.fromkeys(self.layer_names, Factor.B)
        self.smoothed: dict[str, dict[Factor, Smoothed]] = {}
        self.last_observed: int | None = None

    @classmethod
    def create(cls, layer_names: Sequence[str], score: ScoreSettings, seed: int, scaling: float) -> Self:
        """An AS-LoRA policy scoring with `score` for LoRA scaling `scaling` (alpha / r)."""
        del seed
        return cls(layer_names, score, scaling)

    def _choose(self, round_index: int) -> dict[str, FactorChoice]:
        if round_index == 0:
            return self._uniform(FactorChoice.B)
        return {name: FactorChoice.of(self.current[name]) for name in self.layer_names}

    def observe(
        self,
        round_index: int,
        state: AdapterState,
        statistics: Sequence[tuple[float, SiloStatistics]],
        lr: float,
    ) -> None:
        """Score both factors of every layer, fold the scores into the EMA and decide the next choices."""
        if state.layer_names != self.layer_names:
            raise ValueError(
                f"{self.name}: adapter layers {state.layer_names} != policy layers {self.layer_names}"
            )
        if self.last_observed is not None and round_index <= self.last_observed:
            raise ValueError(f"round {round_index} observed after round {self.last_observed}")
        self.last_observed = round_index
        if not statistics:
            return
        sizes = {(n, f): state.layers[n].factor(f).numel() for n in self.layer_names for f in Factor}
        self.curvature.observe(statistics, sizes)
        scores = self.estimator.scores(
            state, statistics, lr, trained=self.current, curvature=self.curvature.values(self.layer_names)
        )
        for name in self.layer_names:
            past = self.smoothed.get(name)
            self.smoothed[name] = {
                f: Smoothed.first(scores[name, f])
                if past is None
                else past[f].updated(scores[name, f], self.settings.ema)
                for f in Factor
            }
            now = self.current[name]
            if should_switch(self.smoothed[name][now], self.smoothed[name][_OTHER[now]], self.settings.z):
                self.current[name] = _OTHER[now]

    def smoothed_scores(self) -> dict[str, dict[Factor, Smoothed]]:
        """Each layer's EMA score per factor as of the last `observe`."""
        return {name: dict(per_factor) for name, per_factor in self.smoothed.items()}

    def curvature_uses(self) -> dict[str, dict[Factor, CurvatureUse]]:
        """Each layer's curvature per factor as the score uses it after the last `observe`."""
        return self.curvature.uses(self.layer_names)

    def state_dict(self) -> dict[str, object]:
        """Current factors, smoothed scores and curvature estimates, and the last observed round."""
        return {
            **super().state_dict(),
            "estimator": self.estimator.name,
            "last_observed": self.last_observed,
            "current": {name: factor.value for name, factor in self.current.items()},
            "smoothed": {
                name: {f.value: [s.mean, s.variance] for f, s in per_factor.items()}
                for name, per_factor in self.smoothed.items()
            },
            "curvature": self.curvature.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore what `state_dict` returned (JSON round-tripped or not)."""
        super().load_state_dict(state)
        if state.get("estimator") != self.estimator.name:
            raise ValueError(
                f"state scored by {state.get('estimator')!r}, policy uses {self.estimator.name!r}"
            )
        last, current, smoothed = state.get("last_observed"), state.get("current"), state.get("smoothed")
        if not (last is None or isinstance(last, int)) or not isinstance(current, Mapping):
            raise ValueError("aslora state needs 'last_observed' (int or null) and 'current' (a mapping)")
        if sorted(current) != self.layer_names or not isinstance(smoothed, Mapping):
            raise ValueError("aslora state must name exactly the policy's layers and carry 'smoothed'")
        self.current = {name: Factor(current[name]) for name in self.layer_names}
        self.smoothed = {
            str(name): {Factor(f): Smoothed(float(pair[0]), float(pair[1])) for f, pair in per_factor.items()}
            for name, per_factor in smoothed.items()
        }
        # a state saved before curvature was estimated has none: the estimates start afresh
        curvature = state.get("curvature", {})
        if not isinstance(curvature, Mapping):
            raise ValueError("aslora state's 'curvature' must be a mapping")
        self.curvature.load_state_dict(curvature)
        self.last_observed = last
