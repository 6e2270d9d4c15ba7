"""Transport-independent round logic: select factors, aggregate updates, feed the score."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from aslora_core.aggregation import AggregationResult, aggregate
from aslora_core.config import Combiner, FederationSettings, TrainingSettings, Weighting
from aslora_core.factor_choice import Factor, FactorChoice, Selection
from aslora_core.factors import AdapterState, SiloStatistics, SiloUpdate
from aslora_core.selection import SelectionPolicy
from aslora_core.selection.curvature import CurvatureUse
from aslora_core.selection.switching import Smoothed
from aslora_core.training.schedule import LearningRates


@dataclass(frozen=True)
class RoundOutcome:
    """The result of aggregating one round."""

    round_index: int
    state: AdapterState
    selection: Selection
    silos: tuple[str, ...]
    product_error: dict[str, float]
    aggregation_seconds: float
    scores: dict[str, dict[Factor, Smoothed]] = field(default_factory=dict)
    """The policy's smoothed scores once it observed this round (empty for policies that do not score)."""
    curvature: dict[str, dict[Factor, CurvatureUse]] = field(default_factory=dict)
    """The curvature the score uses per layer and factor once it observed this round (empty likewise)."""


def b_fraction(selection: Selection) -> float:
    """Fraction of the layers that train factor B (a layer training both counts as B)."""
    if not selection:
        return 0.0
    return sum(Factor.B in choice.factors for choice in selection.values()) / len(selection)


class RoundEngine:
    """Holds the global adapter and the selection policy, and moves a run forward one round at a time."""

    def __init__(
        self,
        policy: SelectionPolicy,
        initial_state: AdapterState,
        learning_rates: LearningRates,
        *,
        combiner: Combiner = Combiner.MEAN,
        trim_fraction: float = 0.0,
        weighting: Weighting = Weighting.DATASET_SIZE,
    ) -> None:
        self.policy = policy
        self.state = initial_state
        self.learning_rates = learning_rates
        self.combiner = combiner
        self.trim_fraction = trim_fraction
        self.weighting = weighting
        self.round_index = 0

    @classmethod
    def for_federation(
        cls,
        policy: SelectionPolicy,
        initial_state: AdapterState,
        training: TrainingSettings,
        federation: FederationSettings,
    ) -> RoundEngine:
        """An engine that combines and weighs updates as the federation settings say."""
        return cls(
            policy,
            initial_state,
            LearningRates(training.lr, training.lr_schedule, federation.rounds),
            combiner=federation.combiner,
            trim_fraction=federation.trim_fraction,
            weighting=federation.weighting,
        )

    def plan(self) -> dict[str, FactorChoice]:
        """The selection of every layer for the next round."""
        return self.policy.select(self.round_index, self.state)

    def complete(self, selection: Selection, updates: Sequence[SiloUpdate]) -> RoundOutcome:
        """Aggregate the round's updates, let the policy observe the released statistics, advance."""
        if not updates:
            raise ValueError("a round needs at least one update")
        ordered = sorted(updates, key=lambda update: update.silo_id)
        if self.weighting is Weighting.UNIFORM:
            ordered = [replace(update, weight=1.0) for update in ordered]
        started = time.perf_counter()
        result = aggregate(
            self.state,
            ordered,
            selection,
            self.policy.traits.aggregation,
            combiner=self.combiner,
            trim_fraction=self.trim_fraction,
        )
        seconds = time.perf_counter() - started
        statistics = [(u.weight, u.statistics) for u in ordered if u.statistics is not None]
        return self._advance(selection, result, statistics, tuple(u.silo_id for u in ordered), seconds)

    def complete_from_mean(
        self,
        selection: Selection,
        mean: SiloUpdate,
        statistics: Sequence[tuple[float, SiloStatistics]],
        silos: Sequence[str],
    ) -> RoundOutcome:
        """Advance from the round's weighted mean alone (secure aggregation: the coordinator never sees an
        update): `mean` carries the mean factors and head, and `statistics` each reporting silo's public
        weight and noise with the pooled statistics, from which the score's weighted means and variances
        are the ones `complete` computes from every silo's own."""
        started = time.perf_counter()
        result = aggregate(self.state, [mean], selection, self.policy.traits.aggregation)
        seconds = time.perf_counter() - started
        return self._advance(selection, result, list(statistics), tuple(sorted(silos)), seconds)

    def _advance(
        self,
        selection: Selection,
        result: AggregationResult,
        statistics: list[tuple[float, SiloStatistics]],
        silos: tuple[str, ...],
        seconds: float,
    ) -> RoundOutcome:
        """Let the policy observe the round, make its adapter the engine's, move to the next round."""
        if self.weighting is Weighting.UNIFORM:
            statistics = [(1.0, entry) for _, entry in statistics]
        # The score predicts the gain of a step in the next round, so it weighs the next round's rate.
        next_round = min(self.round_index + 1, self.learning_rates.rounds - 1)
        self.policy.observe(
            self.round_index, result.state, statistics, self.learning_rates.factor_lr(next_round)
        )
        outcome = RoundOutcome(
            round_index=self.round_index,
            state=result.state,
            selection=dict(selection),
            silos=silos,
            product_error=dict(result.product_error),
            aggregation_seconds=seconds,
            scores=self.policy.smoothed_scores(),
            curvature=self.policy.curvature_uses(),
        )
        self.state = result.state
        self.round_index += 1
        return outcome
