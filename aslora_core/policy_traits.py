"""What each selection policy implies for the rest of a run, known from its name without building a model.

The policy classes (`aslora_core/selection/`) carry these values as their `traits`; the table lives here,
free of torch and of the policies' code, so that settings can check a policy name when they are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aslora_core.aggregation_rule import AggregationRule

if TYPE_CHECKING:
    from aslora_core.config import ScoreSettings


class UnknownPolicyError(ValueError):
    """A policy name that no selection policy answers to."""


@dataclass(frozen=True)
class PolicyTraits:
    """A selection policy's name and what the run around it must do for it."""

    name: str
    reads_statistics: bool = False
    """Whether it selects from the silos' released score statistics: such a run reports its score
    estimator and the smoothed scores."""
    aggregation: AggregationRule = AggregationRule.EXACT
    alternates_factors: bool = False
    """Whether a layer that trains both factors in a round updates one per local step, by parity
    (`aslora_core.training.factor_steps`), rather than both at every step."""

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise ValueError(f"a policy name must be non-empty and unpadded, got {self.name!r}")

    @property
    def linear(self) -> bool:
        """Whether its aggregate is a weighted mean of the silos' tensors (see `AggregationRule.linear`),
        so that a robust combiner may replace that mean, and secure aggregation, which reveals only the
        weighted sum, suffices to compute it."""
        return self.aggregation.linear

    def needs_joint_clipping(self, score: ScoreSettings) -> bool:
        """Whether a run scoring with `score` must clip both factors' per-sample gradients together: the
        policy reads the statistics and the estimator reads the unselected factor's gradients."""
        return self.reads_statistics and score.needs_both_gradients

    def reported_score(self, score: ScoreSettings) -> str | None:
        """The score estimator a run scoring with `score` names in its results; None if it does not score."""
        return score.estimator if self.reads_statistics else None


ASLORA = PolicyTraits("aslora", reads_statistics=True)
FFA = PolicyTraits("ffa")
ROLORA = PolicyTraits("rolora")
FEDIT = PolicyTraits("fedit", aggregation=AggregationRule.SEPARATE_MEANS)
LALORA = PolicyTraits("lalora", aggregation=AggregationRule.SEPARATE_MEANS, alternates_factors=True)
SVD = PolicyTraits("svd", aggregation=AggregationRule.SVD)
RANDOM = PolicyTraits("random")
FIXED_SPLIT = PolicyTraits("fixed-split")

POLICY_TRAITS: dict[str, PolicyTraits] = {
    traits.name: traits for traits in (ASLORA, FFA, ROLORA, FEDIT, LALORA, SVD, RANDOM, FIXED_SPLIT)
}
POLICY_NAMES: tuple[str, ...] = tuple(POLICY_TRAITS)
DEFAULT_POLICY = ASLORA.name


def policy_traits(name: str) -> PolicyTraits:
    """The traits of the policy called `name`; UnknownPolicyError, listing the choices, for any other."""
    try:
        return POLICY_TRAITS[name]
    except KeyError:
        raise UnknownPolicyError(f"unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}") from None
