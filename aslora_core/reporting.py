"""Pictures and a summary of finished runs, read from their results JSON (DESIGN section 7).

`write_report` draws, for any number of runs (one line per run, labelled by its policy):
- `accuracy_loss.png`: evaluation accuracy and loss per round;
- `epsilon.png`: the largest epsilon over silos after each round;
- `selection.png`: one layer x round map per run of the factor each layer trained (A, B or both),
  the picture of what AS-LoRA does;
- `scores.png` (only when some run is AS-LoRA's): one layer x round map per such run of the smoothed
  score margin of A over B in standard errors, the quantity the switching rule compares with z: why
  AS-LoRA did what `selection.png` shows;
- `federated.png` (only when some run's silos evaluated): the federated accuracy and clipped loss per
  round, pooled from the silos' noised releases (aslora_core/federated_report.py);
- `curvature.png` (only when some run recorded curvature): one layer x round map per such run of
  lambda for the factor each layer trained (log scale): the value the score used, dotted, where it used
  an estimate rather than the constant, else the smoothed secant estimate;
and `summary.md`, a markdown table of the runs' final figures beside them (with, per run that recorded
curvature, the share of layer-factors whose score used an estimate).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no display, no global state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from aslora_core.factor_choice import FactorChoice
from aslora_core.federated_evaluation import FederatedEvaluation
from aslora_core.federated_report import FEDERATED_FILE, federated_markdown, plot_federated
from aslora_core.results import ResultsError, RoundRecord, read_results
from aslora_core.score_margin import MARGIN_LIMIT, score_margin

ACCURACY_LOSS_FILE = "accuracy_loss.png"
EPSILON_FILE = "epsilon.png"
SELECTION_FILE = "selection.png"
SCORES_FILE = "scores.png"
CURVATURE_FILE = "curvature.png"
SUMMARY_FILE = "summary.md"
DPI = 120
LAYOUT: Final = "constrained"
LINE_FIGURE_SIZE = (7.0, 4.0)
MAP_WIDTH_INCHES = 8.0
MAP_ROW_INCHES = 0.28
MAP_MIN_HEIGHT_INCHES = 2.2
MAP_EXTRA_HEIGHT_INCHES = 1.2
BYTES_PER_MB = 1e6
FACTOR_CODES: dict[FactorChoice, int] = {FactorChoice.A: 0, FactorChoice.B: 1, FactorChoice.BOTH: 2}
"""The value of a selection-map cell for each choice."""
FACTOR_COLOURS = ("#4C72B0", "#DD8452", "#55A868")
"""A, B, both: in the order of FACTOR_CODES."""
MARGIN_COLOURS = "RdBu_r"
"""Diverging: red where A's score leads, blue where B's does."""
CURVATURE_COLOURS = "viridis"
USED_MARKER = "o"
USED_MARKER_SIZE = 12
USED_MARKER_COLOUR = "white"


class ReportError(ValueError):
    """A file that is not a results JSON of this project."""


@dataclass(frozen=True)
class ReportedRun:
    """One run as the report uses it."""

    label: str
    """How the run is named in legends and the table (its policy and score, or its file when ambiguous)."""
    source: Path
    policy: str
    score: str | None
    initial_accuracy: float | None
    initial_loss: float | None
    epsilon: float
    wall_seconds: float
    rounds: tuple[RoundRecord, ...]
    federated: tuple[FederatedEvaluation, ...] = ()
    """The silos' pooled evaluations (a run with silo_evaluation)."""


def read_run(path: Path) -> ReportedRun:
    """Read one results JSON (`aslora simulate --output` or the coordinator's `results_path`)."""
    try:
        result = read_results(path)
    except ResultsError as error:
        raise ReportError(str(error)) from error
    return ReportedRun(
        label=result.policy if result.score is None else f"{result.policy} ({result.score})",
        source=path,
        policy=result.policy,
        score=result.score,
        initial_accuracy=result.initial_accuracy,
        initial_loss=result.initial_loss,
        epsilon=result.epsilon,
        wall_seconds=result.wall_seconds,
        rounds=tuple(result.rounds),
        federated=tuple(result.federated_evaluations),
    )


def read_runs(paths: Sequence[Path]) -> list[ReportedRun]:
    """Read every file; runs with the same label are told apart by their file names."""
    runs = [read_run(path) for path in paths]
    labels = [run.label for run in runs]
    return [
        run if labels.count(run.label) == 1 else _relabelled(run, f"{run.label} [{run.source.name}]")
        for run in runs
    ]


def _relabelled(run: ReportedRun, label: str) -> ReportedRun:
    return ReportedRun(
        label,
        run.source,
        run.policy,
        run.score,
        run.initial_accuracy,
        run.initial_loss,
        run.epsilon,
        run.wall_seconds,
        run.rounds,
        run.federated,
    )


def layer_order(run: ReportedRun) -> list[str]:
    """The run's layers in the order they first appear in its selections (the model's order)."""
    seen: dict[str, None] = {}
    for record in run.rounds:
        seen.update(dict.fromkeys(record.selection))
    return list(seen)


def selection_matrix(run: ReportedRun) -> tuple[list[str], np.ndarray]:
    """The layers and a layers x rounds matrix of FACTOR_CODES (-1 where a round has no such layer)."""
    layers = layer_order(run)
    matrix = np.full((len(layers), len(run.rounds)), -1, dtype=np.int8)
    row = {layer: index for index, layer in enumerate(layers)}
    for column, record in enumerate(run.rounds):
        for layer, choice in record.selection.items():
            matrix[row[layer], column] = FACTOR_CODES[FactorChoice(choice)]
    return layers, matrix


def score_margin_matrix(run: ReportedRun) -> tuple[list[str], np.ndarray]:
    """The layers and a layers x rounds matrix of (S_A - S_B) / sqrt(se_A^2 + se_B^2) after each round,
    clipped to +-MARGIN_LIMIT (NaN where a round recorded no scores for a layer)."""
    layers = layer_order(run)
    matrix = np.full((len(layers), len(run.rounds)), np.nan)
    row = {layer: index for index, layer in enumerate(layers)}
    for column, record in enumerate(run.rounds):
        for layer, per_factor in (record.scores or {}).items():
            (mean_a, error_a), (mean_b, error_b) = per_factor["A"], per_factor["B"]
            matrix[row[layer], column] = score_margin(mean_a, error_a, mean_b, error_b)
    return layers, matrix


def records_curvature(run: ReportedRun) -> bool:
    """Whether any round of the run recorded curvature."""
    return any(record.curvature for record in run.rounds)


def curvature_matrix(run: ReportedRun) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The layers, a layers x rounds matrix of log10 of the curvature of the factor each layer trained
    that round: the value the score used where it used an estimate (floored at the estimate's
    resolution, so positive), else the smoothed estimate (NaN where there is none or it is not
    positive), and a matching boolean matrix of where the score used an estimate for that factor."""
    layers = layer_order(run)
    values = np.full((len(layers), len(run.rounds)), np.nan)
    used = np.zeros(values.shape, dtype=bool)
    row = {layer: index for index, layer in enumerate(layers)}
    for column, record in enumerate(run.rounds):
        for layer, per_factor in (record.curvature or {}).items():
            trained = FactorChoice(record.selection[layer]).factors
            if len(trained) != 1 or trained[0].value not in per_factor:
                continue
            chosen, estimate, _ = per_factor[trained[0].value]
            shown = chosen if chosen is not None else estimate
            if shown is not None and shown > 0:
                values[row[layer], column] = np.log10(shown)
            used[row[layer], column] = chosen is not None
    return layers, values, used


def plot_accuracy_loss(runs: Sequence[ReportedRun], path: Path) -> Path:
    """Accuracy (left) and loss (right) per round, one line per run; round -1 is the initial adapter."""
    figure = Figure(layout=LAYOUT, figsize=(2 * LINE_FIGURE_SIZE[0], LINE_FIGURE_SIZE[1]))
    accuracy_axes, loss_axes = figure.subplots(1, 2)
    for run in runs:
        rounds = [record.round for record in run.rounds]
        accuracy = [record.accuracy for record in run.rounds]
        loss = [record.loss for record in run.rounds]
        if run.initial_accuracy is not None and run.initial_loss is not None:
            rounds, accuracy, loss = (
                [-1, *rounds],
                [run.initial_accuracy, *accuracy],
                [run.initial_loss, *loss],
            )
        accuracy_axes.plot(rounds, accuracy, marker="o", label=run.label)
        loss_axes.plot(rounds, loss, marker="o", label=run.label)
    accuracy_axes.set(title="Evaluation accuracy", xlabel="round (-1: initial)", ylabel="accuracy")
    loss_axes.set(title="Evaluation loss", xlabel="round (-1: initial)", ylabel="loss")
    for axes in (accuracy_axes, loss_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend()
    return _save(figure, path)


def plot_epsilon(runs: Sequence[ReportedRun], path: Path) -> Path:
    """The largest epsilon over silos after each round, one line per run."""
    figure = Figure(layout=LAYOUT, figsize=LINE_FIGURE_SIZE)
    axes = figure.subplots()
    for run in runs:
        axes.plot(
            [record.round for record in run.rounds],
            [record.epsilon for record in run.rounds],
            marker="o",
            label=run.label,
        )
    axes.set(title="Privacy spent", xlabel="round", ylabel="epsilon (largest over silos)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _layer_maps(
    runs: Sequence[ReportedRun], maps: Sequence[tuple[list[str], np.ndarray]], title: str
) -> tuple[Figure, list[Axes]]:
    """A figure with one titled layer x round panel per run, its axes labelled; callers draw the cells."""
    heights = [
        max(len(layers) * MAP_ROW_INCHES + MAP_EXTRA_HEIGHT_INCHES, MAP_MIN_HEIGHT_INCHES)
        for layers, _ in maps
    ]
    figure = Figure(layout=LAYOUT, figsize=(MAP_WIDTH_INCHES, sum(heights)))
    panels: list[Axes] = figure.subplots(len(runs), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[
        :, 0
    ].tolist()
    for run, (layers, _), axes in zip(runs, maps, panels, strict=True):
        axes.set_title(f"{run.label}: {title}")
        axes.set_xlabel("round")
        axes.set_xticks(range(len(run.rounds)), [str(record.round) for record in run.rounds])
        axes.set_yticks(range(len(layers)), [short_layer(layer) for layer in layers], fontsize="small")
    return figure, panels


def plot_selection(runs: Sequence[ReportedRun], path: Path) -> Path:
    """One layer x round map per run: which factor each layer trained in each round."""
    maps = [selection_matrix(run) for run in runs]
    figure, panels = _layer_maps(runs, maps, "factor trained per layer and round")
    colours = ListedColormap(FACTOR_COLOURS)
    for (_, matrix), axes in zip(maps, panels, strict=True):
        axes.imshow(
            np.ma.masked_less(matrix, 0),
            cmap=colours,
            vmin=0,
            vmax=len(FACTOR_COLOURS) - 1,
            aspect="auto",
            interpolation="nearest",
        )
    handles = [
        Patch(color=colour, label=choice.value)
        for choice, colour in zip(FACTOR_CODES, FACTOR_COLOURS, strict=True)
    ]
    figure.legend(handles=handles, loc="outside right upper", title="factor")
    return _save(figure, path)


def plot_scores(runs: Sequence[ReportedRun], path: Path) -> Path:
    """One layer x round map per run that recorded scores: A's smoothed score margin over B's."""
    scored = [run for run in runs if any(record.scores for record in run.rounds)]
    if not scored:
        raise ReportError("no run recorded scores")
    maps = [score_margin_matrix(run) for run in scored]
    figure, panels = _layer_maps(scored, maps, "score margin of A over B after each round")
    for (_, matrix), axes in zip(maps, panels, strict=True):
        axes.imshow(
            np.ma.masked_invalid(matrix),
            cmap=MARGIN_COLOURS,
            vmin=-MARGIN_LIMIT,
            vmax=MARGIN_LIMIT,
            aspect="auto",
            interpolation="nearest",
        )
    scale = ScalarMappable(norm=Normalize(-MARGIN_LIMIT, MARGIN_LIMIT), cmap=MARGIN_COLOURS)
    figure.colorbar(scale, ax=panels, label="(S_A - S_B) / standard error")
    return _save(figure, path)


def plot_curvature(runs: Sequence[ReportedRun], path: Path) -> Path:
    """One layer x round map per run that recorded curvature: the trained factor's curvature as the score
    used it (marked), else its smoothed estimate."""
    measured = [run for run in runs if records_curvature(run)]
    if not measured:
        raise ReportError("no run recorded curvature")
    matrices = [curvature_matrix(run) for run in measured]
    maps = [(layers, values) for layers, values, _ in matrices]
    figure, panels = _layer_maps(measured, maps, "log10 lambda (o: used)")
    finite = np.concatenate([values[np.isfinite(values)] for _, values, _ in matrices])
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    for (_, values, used), axes in zip(matrices, panels, strict=True):
        axes.imshow(
            np.ma.masked_invalid(values),
            cmap=CURVATURE_COLOURS,
            vmin=low,
            vmax=high,
            aspect="auto",
            interpolation="nearest",
        )
        rows, columns = np.nonzero(used)
        axes.scatter(columns, rows, marker=USED_MARKER, s=USED_MARKER_SIZE, c=USED_MARKER_COLOUR)
    scale = ScalarMappable(norm=Normalize(low, high), cmap=CURVATURE_COLOURS)
    figure.colorbar(
        scale, ax=panels, label="log10 lambda of the trained factor (used, else smoothed estimate)"
    )
    return _save(figure, path)


def curvature_share(run: ReportedRun) -> float | None:
    """The share of layer-factors whose score used an estimated curvature, over the run's rounds."""
    shares = [record.curvature_share for record in run.rounds if record.curvature_share is not None]
    return float(np.mean(shares)) if shares else None


def short_layer(name: str) -> str:
    """A layer name without the model's common prefixes, e.g. `layer.0.attention.self.query` -> `0.query`."""
    parts = name.split(".")
    if "layer" in parts:
        index = parts.index("layer")
        return ".".join([*parts[index + 1 : index + 2], parts[-1]])
    return name


def summary_markdown(runs: Sequence[ReportedRun]) -> str:
    """The runs' final figures as a markdown table, with the pictures linked below it."""
    lines = [
        "# Run report",
        "",
        "| run | file | rounds | final accuracy | final loss | epsilon | mean B fraction | upload MB "
        "| seconds |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    curvature = any(records_curvature(run) for run in runs)
    if curvature:
        lines[2] += " curvature estimated |"
        lines[3] += " ---: |"
    for run in runs:
        last = run.rounds[-1] if run.rounds else None
        b_fraction = float(np.mean([record.b_fraction for record in run.rounds])) if run.rounds else None
        upload = sum(record.upload_bytes for record in run.rounds) / BYTES_PER_MB
        cells = [
            run.label,
            f"`{run.source.name}`",
            str(len(run.rounds)),
            _number(last.accuracy if last else None),
            _number(last.loss if last else None),
            _number(run.epsilon),
            _number(b_fraction),
            _number(upload),
            _number(run.wall_seconds),
        ]
        if curvature:
            cells.append(_number(curvature_share(run)))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"![accuracy and loss per round]({ACCURACY_LOSS_FILE})",
        "",
        f"![epsilon per round]({EPSILON_FILE})",
        "",
        f"![factor trained per layer and round]({SELECTION_FILE})",
        "",
    ]
    if any(record.scores for run in runs for record in run.rounds):
        lines += [f"![score margin of A over B per layer and round]({SCORES_FILE})", ""]
    if curvature:
        lines += [f"![curvature estimate per layer and round]({CURVATURE_FILE})", ""]
    lines += federated_markdown([(run.label, run.federated) for run in runs])
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def write_report(runs: Sequence[ReportedRun], out: Path) -> list[Path]:
    """Write the pictures (scores.png and curvature.png only when some run recorded them) and the summary
    into `out`; return their paths."""
    if not runs:
        raise ReportError("no runs to report")
    out.mkdir(parents=True, exist_ok=True)
    written = [
        plot_accuracy_loss(runs, out / ACCURACY_LOSS_FILE),
        plot_epsilon(runs, out / EPSILON_FILE),
        plot_selection(runs, out / SELECTION_FILE),
    ]
    if any(record.scores for run in runs for record in run.rounds):
        written.append(plot_scores(runs, out / SCORES_FILE))
    if any(records_curvature(run) for run in runs):
        written.append(plot_curvature(runs, out / CURVATURE_FILE))
    if any(run.federated for run in runs):
        written.append(plot_federated([(run.label, run.federated) for run in runs], out / FEDERATED_FILE))
    summary = out / SUMMARY_FILE
    summary.write_text(summary_markdown(runs), encoding="utf-8")
    return [*written, summary]


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI)
    return path
