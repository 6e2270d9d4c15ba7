"""The report's part on evaluation at the silos: the federated accuracy and loss per round, and a table of
each run's last federated evaluation with the silos it covers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from aslora_core.federated_evaluation import FederatedEvaluation

FEDERATED_FILE = "federated.png"
LINE_FIGURE_SIZE = (7.0, 4.0)
DPI = 120
LAYOUT: Final = "constrained"


def plot_federated(runs: Sequence[tuple[str, Sequence[FederatedEvaluation]]], path: Path) -> Path:
    """Federated accuracy (left) and mean clipped loss (right) per round, one line per labelled run; a
    round whose releases held no examples is left out."""
    figure = Figure(layout=LAYOUT, figsize=(2 * LINE_FIGURE_SIZE[0], LINE_FIGURE_SIZE[1]))
    accuracy_axes, loss_axes = figure.subplots(1, 2)
    for label, evaluations in runs:
        if not evaluations:
            continue
        covered = f"{label} ({evaluations[-1].silos_released}/{evaluations[-1].silos_asked} silos)"
        pairs = [(e.round_index, e.accuracy, e.loss) for e in evaluations if e.accuracy is not None]
        accuracy_axes.plot([p[0] for p in pairs], [p[1] for p in pairs], marker="o", label=covered)
        loss_axes.plot([p[0] for p in pairs], [p[2] for p in pairs], marker="o", label=covered)
    accuracy_axes.set(title="Federated accuracy (silos' noised releases)", xlabel="round", ylabel="accuracy")
    loss_axes.set(title="Federated clipped loss (silos' noised releases)", xlabel="round", ylabel="loss")
    for axes in (accuracy_axes, loss_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend()
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI)
    return path


def federated_markdown(runs: Sequence[tuple[str, Sequence[FederatedEvaluation]]]) -> list[str]:
    """Markdown lines: each run's last federated evaluation and whom it covers (none without any)."""
    rows = [(label, evaluations[-1]) for label, evaluations in runs if evaluations]
    if not rows:
        return []
    lines = [
        "## Evaluation at the silos",
        "",
        "| run | round | federated accuracy | federated loss | silos released / asked | declined |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, last in rows:
        cells = [
            label,
            str(last.round_index),
            _number(last.accuracy),
            _number(last.loss),
            f"{last.silos_released} / {last.silos_asked}",
            ", ".join(last.declined) or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, "", f"![federated accuracy and loss per round]({FEDERATED_FILE})", ""]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
