"""A round's record in the results file, built from its outcome: the one builder both transports use."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from aslora_core.evaluation import Evaluation
from aslora_core.results import RoundRecord
from aslora_core.rounds import RoundOutcome, b_fraction


def score_table(outcome: RoundOutcome) -> dict[str, dict[str, list[float]]] | None:
    """The round's smoothed scores as the results JSON holds them: layer -> factor -> [mean, standard
    error]; None when the policy does not score."""
    if not outcome.scores:
        return None
    return {
        layer: {factor.value: [s.mean, math.sqrt(s.variance)] for factor, s in sorted(per_factor.items())}
        for layer, per_factor in sorted(outcome.scores.items())
    }


def curvature_table(outcome: RoundOutcome) -> dict[str, dict[str, list[float | None]]] | None:
    """The round's curvature as the results JSON holds it: layer -> factor -> [the estimate the score
    used (null: it used the constant), the factor's smoothed estimate, its standard error] (the last two
    null before the factor trained); None when the policy does not score."""
    if not outcome.curvature:
        return None
    table: dict[str, dict[str, list[float | None]]] = {}
    for layer, per_factor in sorted(outcome.curvature.items()):
        table[layer] = {}
        for factor, use in sorted(per_factor.items()):
            estimate = use.estimate
            table[layer][factor.value] = [
                use.value if use.estimated else None,
                None if estimate is None else estimate.mean,
                None if estimate is None else math.sqrt(estimate.variance),
            ]
    return table


def curvature_share(outcome: RoundOutcome) -> float | None:
    """The share of layer-factors whose score used an estimated curvature; None when the policy does not
    score."""
    uses = [use for per_factor in outcome.curvature.values() for use in per_factor.values()]
    return sum(use.estimated for use in uses) / len(uses) if uses else None


def round_record(
    outcome: RoundOutcome,
    evaluation: Evaluation,
    *,
    silo_epsilons: Mapping[str, float],
    upload_bytes: int,
    statistics_bytes: int,
    seconds: float,
) -> RoundRecord:
    """The record of the aggregated round `outcome` evaluated as `evaluation`: each silo's epsilon spent so
    far, the bytes of the silos' uploads (and of the statistics within them), and the round's wall time."""
    errors = list(outcome.product_error.values())
    return RoundRecord(
        round=outcome.round_index,
        accuracy=evaluation.accuracy,
        loss=evaluation.loss,
        perplexity=evaluation.perplexity,
        epsilon=max(silo_epsilons.values(), default=0.0),
        silo_epsilons=dict(silo_epsilons),
        b_fraction=b_fraction(outcome.selection),
        upload_bytes=upload_bytes,
        statistics_bytes=statistics_bytes,
        aggregation_seconds=outcome.aggregation_seconds,
        seconds=seconds,
        silos=list(outcome.silos),
        selection={layer: choice.value for layer, choice in outcome.selection.items()},
        product_error=float(np.mean(errors)) if errors else None,
        scores=score_table(outcome),
        curvature=curvature_table(outcome),
        curvature_share=curvature_share(outcome),
    )
