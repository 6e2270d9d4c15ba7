"""A round's record is built in one place from its outcome, its evaluation and what the transport counted."""

from __future__ import annotations

import math

import torch

from aslora_core.evaluation import Evaluation
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import AdapterState, LayerFactors
from aslora_core.round_records import curvature_share, curvature_table, round_record, score_table
from aslora_core.rounds import RoundOutcome
from aslora_core.selection.curvature import CurvatureUse
from aslora_core.selection.switching import Smoothed

RANK, WIDTH = 2, 4
LAYERS = ("l0.q", "l0.v", "l1.q", "l1.v")


def _outcome(*, scored: bool) -> RoundOutcome:
    state = AdapterState(
        layers={name: LayerFactors(a=torch.zeros(RANK, WIDTH), b=torch.zeros(WIDTH, RANK)) for name in LAYERS}
    )
    choices = (FactorChoice.B, FactorChoice.A, FactorChoice.BOTH, FactorChoice.A)
    scores = {"l0.v": {Factor.B: Smoothed(0.5, 0.04), Factor.A: Smoothed(0.25, 0.01)}} if scored else {}
    curvature = {
        "l0.v": {
            Factor.A: CurvatureUse(value=0.3, estimated=True, estimate=Smoothed(0.3, 0.0025)),
            Factor.B: CurvatureUse(value=0.05, estimated=False, estimate=None),
        }
    }
    return RoundOutcome(
        round_index=3,
        state=state,
        selection=dict(zip(LAYERS, choices, strict=True)),
        silos=("silo-0", "silo-1"),
        product_error={"l1.q": 0.1, "l1.v": 0.3},
        aggregation_seconds=0.25,
        scores=scores,
        curvature=curvature if scored else {},
    )


def test_a_record_holds_the_outcome_the_evaluation_and_the_counts() -> None:
    evaluation = Evaluation(loss=0.6, accuracy=0.7, examples=32, perplexity=1.8)
    record = round_record(
        _outcome(scored=True),
        evaluation,
        silo_epsilons={"silo-0": 2.5, "silo-1": 1.5},
        upload_bytes=1000,
        statistics_bytes=80,
        seconds=4.0,
    )
    assert (record.round, record.accuracy, record.loss, record.perplexity) == (3, 0.7, 0.6, 1.8)
    assert (record.epsilon, record.upload_bytes, record.statistics_bytes) == (2.5, 1000, 80), "the largest"
    assert record.silo_epsilons == {"silo-0": 2.5, "silo-1": 1.5}
    assert (record.aggregation_seconds, record.seconds) == (0.25, 4.0)
    assert record.silos == ["silo-0", "silo-1"]
    assert record.selection == {"l0.q": "B", "l0.v": "A", "l1.q": "AB", "l1.v": "A"}
    assert record.b_fraction == 0.5, "a layer training both counts as B"
    assert record.product_error is not None and math.isclose(record.product_error, 0.2)
    assert record.scores == {"l0.v": {"A": [0.25, 0.1], "B": [0.5, 0.2]}}, "factors sorted, standard errors"
    assert record.curvature == {"l0.v": {"A": [0.3, 0.3, 0.05], "B": [None, None, None]}}
    assert record.curvature_share == 0.5


def test_a_policy_that_does_not_score_records_no_scores() -> None:
    outcome = _outcome(scored=False)
    assert score_table(outcome) is None
    assert curvature_table(outcome) is None and curvature_share(outcome) is None
