"""A round's record in the results file, built from its outcome: the one builder both transports use."""

from __future__ import annotations

import math

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


def round_record(
    outcome: RoundOutcome,
    evaluation: Evaluation,
    *,
    epsilon: float,
    upload_bytes: int,
    statistics_bytes: int,
    seconds: float,
) -> RoundRecord:
    """The record of the aggregated round `outcome` evaluated as `evaluation`: `epsilon` spent so far, the
    bytes of the silos' uploads (and of the statistics within them), and the round's wall time."""
    errors = list(outcome.product_error.values())
    return RoundRecord(
        round=outcome.round_index,
        accuracy=evaluation.accuracy,
        loss=evaluation.loss,
        perplexity=evaluation.perplexity,
        epsilon=epsilon,
        b_fraction=b_fraction(outcome.selection),
        upload_bytes=upload_bytes,
        statistics_bytes=statistics_bytes,
        aggregation_seconds=outcome.aggregation_seconds,
        seconds=seconds,
        silos=list(outcome.silos),
        selection={layer: choice.value for layer, choice in outcome.selection.items()},
        product_error=float(np.mean(errors)) if errors else None,
        scores=score_table(outcome),
    )
