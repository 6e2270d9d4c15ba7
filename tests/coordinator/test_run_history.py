"""A run's history as the admin service serves it: every recorded round (figures, each silo's epsilon,
each layer's factor and scores) and the silos' pooled evaluations, unchanged through the wire."""

from __future__ import annotations

from dataclasses import asdict

from aslora_coordinator.admin_queries import history_view
from aslora_coordinator.admin_wire import history_from_proto, history_to_proto
from aslora_coordinator.views import FactorScoreView, LayerRoundView
from aslora_core.federated_evaluation import FederatedEvaluation
from aslora_core.results import RoundRecord, RunResult

LAYERS = ("layer.0.query", "layer.0.value")


def _record(index: int, scored: bool) -> RoundRecord:
    return RoundRecord(
        round=index,
        accuracy=0.5 + index / 10,
        loss=0.7 - index / 10,
        epsilon=1.5 + index,
        b_fraction=0.5,
        upload_bytes=100,
        statistics_bytes=10,
        aggregation_seconds=0.1,
        seconds=1.0,
        silos=["silo-a", "silo-b"],
        selection={LAYERS[0]: "B", LAYERS[1]: "A"},
        scores={LAYERS[1]: {"A": [0.25, 0.5], "B": [0.125, 0.0625]}} if scored else None,
        silo_epsilons={"silo-a": 1.5 + index, "silo-b": 1.0 + index},
    )


def _result() -> RunResult:
    federated = FederatedEvaluation(
        round_index=1,
        loss=None,
        accuracy=0.75,
        examples=40.0,
        silos_released=1,
        silos_asked=2,
        declined=("silo-b",),
        releases=(),
    )
    return RunResult(
        policy="aslora",
        score="norm",
        settings={},
        silo_examples={"silo-a": 40, "silo-b": 40},
        noise_multipliers={"silo-a": 1.0, "silo-b": 1.0},
        initial_accuracy=0.5,
        initial_loss=None,
        rounds=[_record(0, scored=False), _record(1, scored=True)],
        federated_evaluations=[federated],
    )


def test_the_history_holds_each_round_in_order_with_its_layers_scores_and_silo_epsilons() -> None:
    history = history_view("run-1", _result())
    assert [item.round_index for item in history.rounds] == [0, 1]
    assert history.rounds[1].silo_epsilons == {"silo-a": 2.5, "silo-b": 2.0}
    assert history.rounds[1].epsilon == 2.5
    assert history.rounds[1].layers == [
        LayerRoundView(LAYERS[0], "B", None, None),
        LayerRoundView(LAYERS[1], "A", FactorScoreView(0.25, 0.5), FactorScoreView(0.125, 0.0625)),
    ], "in the model's order; a layer without scores has none"
    assert history.rounds[0].layers[1].score_a is None, "a round that recorded no scores"
    assert (history.initial_accuracy, history.initial_loss) == (0.5, None)
    assert [(item.round_index, item.accuracy, item.loss) for item in history.federated] == [(1, 0.75, None)]


def test_the_history_crosses_the_wire_unchanged() -> None:
    history = history_view("run-1", _result())
    assert asdict(history_from_proto(history_to_proto(history))) == asdict(history)


def test_results_written_before_silo_epsilons_were_recorded_read_as_none() -> None:
    document = _result().to_json()
    for record in document["rounds"]:
        del record["silo_epsilons"]
    history = history_view("run-1", RunResult.from_json(document))
    assert [item.silo_epsilons for item in history.rounds] == [{}, {}]
