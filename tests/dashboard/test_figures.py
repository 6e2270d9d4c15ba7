"""The dashboard's charts hold the run's figures: the coordinator's evaluation from the initial adapter
on and the silos' pooled one, each silo's epsilon, what each layer trained and A's score margin over B's."""

from __future__ import annotations

from typing import Any

from aslora_cli.dashboard.figures import FACTOR_CODES, run_figures
from aslora_coordinator.views import (
    FactorScoreView,
    FederatedStatusView,
    LayerRoundView,
    RoundHistoryView,
    RunHistoryView,
)
from aslora_core.factor_choice import FactorChoice
from aslora_core.score_margin import MARGIN_LIMIT, score_margin

LAYERS = ("layer.0.query", "layer.0.value")


def _round(index: int, factors: tuple[str, str], scored: bool) -> RoundHistoryView:
    score_a, score_b = FactorScoreView(0.5, 0.1), FactorScoreView(0.25, 0.2)
    return RoundHistoryView(
        round_index=index,
        accuracy=0.6 + index / 10,
        loss=0.7 - index / 10,
        epsilon=2.0 + index,
        silo_epsilons={"silo-a": 2.0 + index, "silo-b": 1.0 + index},
        layers=[
            LayerRoundView(layer, factor, score_a if scored else None, score_b if scored else None)
            for layer, factor in zip(LAYERS, factors, strict=True)
        ],
    )


def _history(scored: bool) -> RunHistoryView:
    return RunHistoryView(
        run_id="run-1",
        initial_accuracy=0.5,
        initial_loss=0.8,
        rounds=[_round(0, ("B", "B"), scored), _round(1, ("A", "AB"), scored)],
        federated=[FederatedStatusView(0, 0.55, None, 2, 2), FederatedStatusView(1, None, None, 0, 2)],
    )


def _traces(figure: Any) -> dict[str, tuple[list[Any], list[Any]]]:
    return {trace.name: (list(trace.x), list(trace.y)) for trace in figure.data}


def test_accuracy_and_loss_lines_start_at_the_initial_adapter_beside_the_pooled_evaluations() -> None:
    figures = run_figures(_history(scored=False))
    accuracy = _traces(figures["accuracy"])
    assert accuracy["coordinator"] == ([0, 1, 2], [0.5, 0.6, 0.7]), "round 0: the initial adapter"
    assert accuracy["silos (federated)"] == ([1], [0.55]), "an evaluation without a figure is left out"
    assert _traces(figures["loss"]) == {"coordinator": ([0, 1, 2], [0.8, 0.7, 0.6])}


def test_each_silo_has_its_epsilon_line() -> None:
    epsilon = _traces(run_figures(_history(scored=False))["epsilon"])
    assert epsilon == {"silo-a": ([1, 2], [2.0, 3.0]), "silo-b": ([1, 2], [1.0, 2.0])}


def test_the_selection_map_holds_each_layer_s_factor_per_round() -> None:
    [heatmap] = run_figures(_history(scored=False))["selection"].data
    assert list(heatmap.y) == list(LAYERS) and list(heatmap.x) == [1, 2]
    codes = FACTOR_CODES
    assert [list(row) for row in heatmap.z] == [
        [codes[FactorChoice.B], codes[FactorChoice.A]],
        [codes[FactorChoice.B], codes[FactorChoice.BOTH]],
    ]


def test_the_margin_map_appears_with_scores_only() -> None:
    assert "margins" not in run_figures(_history(scored=False))
    [heatmap] = run_figures(_history(scored=True))["margins"].data
    expected = score_margin(0.5, 0.1, 0.25, 0.2)
    assert 0 < expected < MARGIN_LIMIT
    assert [list(row) for row in heatmap.z] == [[expected, expected], [expected, expected]]
    assert (heatmap.zmin, heatmap.zmax) == (-MARGIN_LIMIT, MARGIN_LIMIT)
