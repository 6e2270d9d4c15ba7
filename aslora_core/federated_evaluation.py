"""The silos' evaluation releases (noised sums) and the coordinator's federated loss and accuracy from them;
no torch, so that the operator's views and reports can read them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RELEASED_SUMS = 3
"""The clipped loss sum, the correct count and the example count: one Gaussian mechanism over all three."""
SINGLE_RECORD_COUNTS = 2.0
"""What one record adds to the squared sensitivity besides its loss: at most 1 to the correct count and
exactly 1 to the example count."""


def release_sensitivity(loss_bound: float) -> float:
    """L2 sensitivity of (sum of losses clipped at L, correct, examples) under adding or removing one
    record: sqrt(L^2 + 1 + 1)."""
    if not (math.isfinite(loss_bound) and loss_bound > 0):
        raise ValueError(f"the evaluation loss bound must be positive and finite, got {loss_bound}")
    return math.sqrt(loss_bound**2 + SINGLE_RECORD_COUNTS)


@dataclass(frozen=True)
class EvaluationSums:
    """One silo's evaluation sums (exact before the release, noised after): the sum of per-example losses
    each clipped to [0, L], the number predicted correctly and the number of examples."""

    loss_sum: float
    correct: float
    examples: float

    def __post_init__(self) -> None:
        if not all(math.isfinite(value) for value in (self.loss_sum, self.correct, self.examples)):
            raise ValueError("evaluation sums must be finite")


@dataclass(frozen=True)
class EvaluationRelease:
    """What a silo released about one global adapter: its noised sums and the noise multiplier it used
    (the noise's standard deviation is that times the release sensitivity)."""

    silo_id: str
    sums: EvaluationSums
    noise_multiplier: float


@dataclass(frozen=True)
class FederatedEvaluation:
    """The federated figures of one global adapter from the silos that released: the mean clipped loss
    and the accuracy over all their evaluation examples, and how many silos they cover."""

    round_index: int
    loss: float | None
    """None when the released example count is not positive (too few examples for the noise)."""
    accuracy: float | None
    examples: float
    silos_released: int
    silos_asked: int
    declined: tuple[str, ...]
    """Silos asked that released nothing (their config declines evaluation, or they have no split)."""
    releases: tuple[EvaluationRelease, ...]


def ratio(numerator: float, examples: float, upper: float) -> float | None:
    """`numerator / examples` kept in [0, upper] (post-processing of noised sums), None without examples."""
    if examples <= 0:
        return None
    return min(max(numerator / examples, 0.0), upper)


def combine(
    round_index: int,
    releases: Sequence[EvaluationRelease],
    declined: Sequence[str],
    loss_bound: float,
) -> FederatedEvaluation:
    """Pool the silos' released sums: total clipped loss and correct count over total examples."""
    loss_sum = sum(r.sums.loss_sum for r in releases)
    correct = sum(r.sums.correct for r in releases)
    examples = sum(r.sums.examples for r in releases)
    return FederatedEvaluation(
        round_index=round_index,
        loss=ratio(loss_sum, examples, loss_bound),
        accuracy=ratio(correct, examples, 1.0),
        examples=examples,
        silos_released=len(releases),
        silos_asked=len(releases) + len(declined),
        declined=tuple(sorted(declined)),
        releases=tuple(sorted(releases, key=lambda r: r.silo_id)),
    )


def to_json(evaluation: FederatedEvaluation) -> dict[str, Any]:
    """The results file's record of one federated evaluation, each silo's noised sums beside the pooled
    figures."""
    return {
        "round": evaluation.round_index,
        "accuracy": evaluation.accuracy,
        "loss": evaluation.loss,
        "examples": evaluation.examples,
        "silos_released": evaluation.silos_released,
        "silos_asked": evaluation.silos_asked,
        "declined": list(evaluation.declined),
        "silos": {
            r.silo_id: {
                "loss_sum": r.sums.loss_sum,
                "correct": r.sums.correct,
                "examples": r.sums.examples,
                "noise_multiplier": r.noise_multiplier,
            }
            for r in evaluation.releases
        },
    }


def from_json(document: Mapping[str, Any]) -> FederatedEvaluation:
    """The federated evaluation `to_json` wrote (KeyError, TypeError or ValueError when malformed)."""
    releases = tuple(
        EvaluationRelease(
            silo_id=str(silo),
            sums=EvaluationSums(float(item["loss_sum"]), float(item["correct"]), float(item["examples"])),
            noise_multiplier=float(item["noise_multiplier"]),
        )
        for silo, item in document["silos"].items()
    )
    return FederatedEvaluation(
        round_index=int(document["round"]),
        loss=None if document["loss"] is None else float(document["loss"]),
        accuracy=None if document["accuracy"] is None else float(document["accuracy"]),
        examples=float(document["examples"]),
        silos_released=int(document["silos_released"]),
        silos_asked=int(document["silos_asked"]),
        declined=tuple(str(silo) for silo in document["declined"]),
        releases=releases,
    )
