"""The dashboard's charts of one run as Plotly figures: accuracy and loss per round (the coordinator's
evaluation and the silos' pooled one), each silo's epsilon, the layer x round map of the factor each layer
trained and, under AS-LoRA, of A's score margin over B's."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import plotly.graph_objects as go

from aslora_coordinator.views import FederatedStatusView, RoundHistoryView, RunHistoryView
from aslora_core.factor_choice import FactorChoice
from aslora_core.round_numbers import round_number
from aslora_core.score_margin import MARGIN_LIMIT, score_margin

INITIAL_ROUND = 0
"""Where the initial adapter's evaluation sits on the round axis (rounds are numbered from 1)."""
FACTOR_CODES = {FactorChoice.A: 0, FactorChoice.B: 1, FactorChoice.BOTH: 2}
FACTOR_COLOURS = ("#4C72B0", "#DD8452", "#55A868")
"""A, B, both, in the order of FACTOR_CODES (the report's colours, aslora_core/reporting.py)."""
MARGIN_COLOURS = "RdBu_r"
"""Diverging: red where A's score leads, blue where B's does (as in the report)."""
CHART_HEIGHT = 320
MAP_ROW_PIXELS = 22
MAP_MIN_HEIGHT = 240
MAP_MARGIN_PIXELS = 120
COORDINATOR_NAME = "coordinator"
FEDERATED_NAME = "silos (federated)"


def run_figures(history: RunHistoryView) -> dict[str, go.Figure]:
    """Every chart of the run, by the name the page gives its place."""
    figures = {
        "accuracy": _evaluation_figure(history, "accuracy", lambda r: r.accuracy, lambda f: f.accuracy),
        "loss": _evaluation_figure(history, "loss", lambda r: r.loss, lambda f: f.loss),
        "epsilon": epsilon_figure(history.rounds),
        "selection": selection_figure(history.rounds),
    }
    if any(layer.score_a is not None for item in history.rounds for layer in item.layers):
        figures["margins"] = margin_figure(history.rounds)
    return figures


def _evaluation_figure(
    history: RunHistoryView,
    name: str,
    coordinator: Callable[[RoundHistoryView], float],
    federated: Callable[[FederatedStatusView], float | None],
) -> go.Figure:
    """One line per evaluation that measured `name`: the coordinator's (from the initial adapter on) and
    the silos' pooled one."""
    initial = history.initial_accuracy if name == "accuracy" else history.initial_loss
    points = [(INITIAL_ROUND, initial)] if initial is not None else []
    points += [(round_number(item.round_index), coordinator(item)) for item in history.rounds]
    figure = _line_figure(name, "round")
    if points:
        figure.add_trace(_line(points, COORDINATOR_NAME))
    pooled = [(round_number(item.round_index), federated(item)) for item in history.federated]
    measured = [(x, y) for x, y in pooled if y is not None]
    if measured:
        figure.add_trace(_line(measured, FEDERATED_NAME))
    return figure


def epsilon_figure(rounds: Sequence[RoundHistoryView]) -> go.Figure:
    """Each silo's epsilon after each round (the largest over silos, for results that kept only it)."""
    figure = _line_figure("epsilon", "round")
    for silo in sorted({silo for item in rounds for silo in item.silo_epsilons}):
        reported = [r for r in rounds if silo in r.silo_epsilons]
        figure.add_trace(
            _line([(round_number(r.round_index), r.silo_epsilons[silo]) for r in reported], silo)
        )
    older = [(round_number(r.round_index), r.epsilon) for r in rounds if not r.silo_epsilons]
    if older:
        figure.add_trace(_line(older, "largest over silos"))
    return figure


def _line(points: Sequence[tuple[int, float]], name: str) -> go.Scatter:
    return go.Scatter(x=[x for x, _ in points], y=[y for _, y in points], mode="lines+markers", name=name)


def layer_order(rounds: Sequence[RoundHistoryView]) -> list[str]:
    """The layers in the order they first appear (the model's order)."""
    seen: dict[str, None] = {}
    for item in rounds:
        seen.update(dict.fromkeys(layer.layer for layer in item.layers))
    return list(seen)


def selection_figure(rounds: Sequence[RoundHistoryView]) -> go.Figure:
    """Layers x rounds: the factor each layer trained (A, B or both)."""
    layers = layer_order(rounds)
    row = {layer: index for index, layer in enumerate(layers)}
    codes: list[list[int | None]] = [[None] * len(rounds) for _ in layers]
    labels: list[list[str]] = [[""] * len(rounds) for _ in layers]
    for column, item in enumerate(rounds):
        for layer in item.layers:
            choice = FactorChoice(layer.factor)
            codes[row[layer.layer]][column] = FACTOR_CODES[choice]
            labels[row[layer.layer]][column] = choice.value
    last = len(FACTOR_CODES) - 1
    colours = [[code / last, FACTOR_COLOURS[code]] for code in range(len(FACTOR_CODES))]
    heatmap = go.Heatmap(
        z=codes,
        x=[round_number(item.round_index) for item in rounds],
        y=layers,
        text=labels,
        texttemplate="%{text}",
        hovertemplate="%{y}<br>round %{x}: %{text}<extra></extra>",
        colorscale=colours,
        zmin=0,
        zmax=last,
        showscale=False,
        xgap=1,
        ygap=1,
    )
    return _map_figure(heatmap, "factor trained by each layer", len(layers))


def margin_figure(rounds: Sequence[RoundHistoryView]) -> go.Figure:
    """Layers x rounds: A's smoothed score margin over B's in standard errors after each round."""
    layers = layer_order(rounds)
    row = {layer: index for index, layer in enumerate(layers)}
    margins: list[list[float | None]] = [[None] * len(rounds) for _ in layers]
    for column, item in enumerate(rounds):
        for layer in item.layers:
            if layer.score_a is not None and layer.score_b is not None:
                a, b = layer.score_a, layer.score_b
                margins[row[layer.layer]][column] = score_margin(
                    a.mean, a.standard_error, b.mean, b.standard_error
                )
    heatmap = go.Heatmap(
        z=margins,
        x=[round_number(item.round_index) for item in rounds],
        y=layers,
        hovertemplate="%{y}<br>round %{x}: %{z:.2f} standard errors<extra></extra>",
        colorscale=MARGIN_COLOURS,
        zmin=-MARGIN_LIMIT,
        zmax=MARGIN_LIMIT,
        colorbar={"title": {"text": "A over B (se)"}},
        xgap=1,
        ygap=1,
    )
    return _map_figure(heatmap, "score margin of A over B after each round", len(layers))


def _line_figure(name: str, axis: str) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(
        title={"text": name},
        height=CHART_HEIGHT,
        xaxis={"title": {"text": axis}, "dtick": 1},
        yaxis={"title": {"text": name}},
        uirevision=name,
    )
    return figure


def _map_figure(heatmap: go.Heatmap, title: str, rows: int) -> go.Figure:
    figure = go.Figure(heatmap)
    figure.update_layout(
        title={"text": title},
        height=max(MAP_MIN_HEIGHT, rows * MAP_ROW_PIXELS + MAP_MARGIN_PIXELS),
        xaxis={"title": {"text": "round"}, "dtick": 1},
        yaxis={"autorange": "reversed"},
        uirevision=title,
    )
    return figure
