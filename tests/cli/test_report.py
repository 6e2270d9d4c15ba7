"""`aslora report` on the results of two real (tiny) simulations: three valid PNGs, a summary table, and
a selection map of layers x rounds."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from aslora_cli.main import app
from aslora_core.atomic_files import SHARED_FILE_MODE
from aslora_core.config import ClippingMode, CurvatureSource, DataSettings, ScoreSettings
from aslora_core.factor_choice import FactorChoice
from aslora_core.reporting import (
    ACCURACY_LOSS_FILE,
    CURVATURE_FILE,
    EPSILON_FILE,
    FACTOR_CODES,
    SCORES_FILE,
    SELECTION_FILE,
    SUMMARY_FILE,
    ReportError,
    curvature_matrix,
    read_run,
    read_runs,
    score_margin_matrix,
    selection_matrix,
    write_report,
)
from aslora_core.score_margin import MARGIN_LIMIT
from aslora_core.simulation import run_simulation
from tests.federation.settings import tiny_simulation
from tests.grpc.helpers import write_tsv

POLICIES = ("aslora", "ffa")
ROUNDS = 3
LAYERS = 4
"""The tiny BERT has two layers with LoRA on query and value."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results_files(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The results JSON of two real in-process simulations, one per policy (AS-LoRA scoring with the
    hybrid estimator, whose scores have a spread, and the estimated curvature)."""
    folder = tmp_path_factory.mktemp("report-runs")
    train, evaluation = write_tsv(folder / "train.tsv", 96), write_tsv(folder / "eval.tsv", 32, 5000)
    paths = []
    for policy in POLICIES:
        settings = tiny_simulation(
            tiny_model_dir,
            DataSettings(train_path=str(train), eval_path=str(evaluation)),
            silos=2,
            rounds=ROUNDS,
            local_steps=2,
            batch_size=16,
            physical_batch_size=16,
            policy=policy,
        )
        if policy == "aslora":
            score = ScoreSettings(estimator="hybrid", curvature=CurvatureSource.ESTIMATED)
            federation = dataclasses.replace(settings.federation, score=score)
            privacy = dataclasses.replace(settings.privacy, clipping=ClippingMode.JOINT)
            settings = dataclasses.replace(settings, federation=federation, privacy=privacy)
        path = folder / f"{policy}.json"
        run_simulation(settings).write(path)
        paths.append(path)
    return paths


def test_results_files_are_readable_by_others(results_files: list[Path]) -> None:
    assert {stat.S_IMODE(path.stat().st_mode) for path in results_files} == {SHARED_FILE_MODE}


def test_report_writes_three_valid_pngs_and_a_summary(results_files: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    outcome = CliRunner().invoke(app, ["report", *map(str, results_files), "--out", str(out)])
    assert outcome.exit_code == 0, outcome.output
    for name in (ACCURACY_LOSS_FILE, EPSILON_FILE, SELECTION_FILE, SCORES_FILE, CURVATURE_FILE):
        picture = out / name
        assert str(picture) in outcome.output
        assert picture.read_bytes()[: len(PNG_SIGNATURE)] == PNG_SIGNATURE
        pixels = imread(picture)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert float(np.std(pixels)) > 0, f"{name} is blank"
    summary = (out / SUMMARY_FILE).read_text()
    table_rows = [line for line in summary.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table_rows) == 1 + len(POLICIES)
    assert all(any(f"| {policy} " in row for row in table_rows) for policy in POLICIES)
    assert f"({SELECTION_FILE})" in summary
    assert f"({SCORES_FILE})" in summary
    assert f"({CURVATURE_FILE})" in summary
    assert "curvature estimated" in table_rows[0]


def test_the_selection_map_is_layers_by_rounds(results_files: list[Path]) -> None:
    aslora, ffa = read_runs(results_files)
    for run in (aslora, ffa):
        layers, matrix = selection_matrix(run)
        assert matrix.shape == (LAYERS, ROUNDS) == (len(layers), len(run.rounds))
        for column, record in enumerate(run.rounds):
            for row, layer in enumerate(layers):
                assert matrix[row, column] == FACTOR_CODES[FactorChoice(record.selection[layer])]
    # FFA trains B only; the maps' B fraction per round matches the results' own.
    assert (selection_matrix(ffa)[1] == FACTOR_CODES[FactorChoice.B]).all()
    _, matrix = selection_matrix(aslora)
    fractions = (matrix == FACTOR_CODES[FactorChoice.B]).mean(axis=0)
    assert fractions.tolist() == pytest.approx([record.b_fraction for record in aslora.rounds])


def test_the_score_map_is_the_margin_in_standard_errors(results_files: list[Path]) -> None:
    aslora, _ = read_runs(results_files)
    layers, matrix = score_margin_matrix(aslora)
    assert matrix.shape == (LAYERS, ROUNDS)
    for column, record in enumerate(aslora.rounds):
        assert record.scores is not None
        for row, layer in enumerate(layers):
            (mean_a, error_a), (mean_b, error_b) = record.scores[layer]["A"], record.scores[layer]["B"]
            expected = (mean_a - mean_b) / np.hypot(error_a, error_b)
            assert matrix[row, column] == pytest.approx(np.clip(expected, -MARGIN_LIMIT, MARGIN_LIMIT))


def test_a_margin_without_spread_is_drawn_at_the_limit_of_its_sign(results_files: list[Path]) -> None:
    aslora, _ = read_runs(results_files)
    first = aslora.rounds[0]
    assert first.scores is not None
    layer, other = sorted(first.scores)[:2]
    spreadless = {layer: {"A": [2.0, 0.0], "B": [1.0, 0.0]}, other: {"A": [1.0, 0.0], "B": [2.0, 0.0]}}
    run = dataclasses.replace(aslora, rounds=(dataclasses.replace(first, scores=spreadless),))
    layers, matrix = score_margin_matrix(run)
    assert matrix[layers.index(layer), 0] == MARGIN_LIMIT
    assert matrix[layers.index(other), 0] == -MARGIN_LIMIT


def test_the_curvature_map_is_the_trained_factors_estimate(results_files: list[Path]) -> None:
    """Each cell: log10 of the curvature of the factor the layer trained that round, the score's where it
    used an estimate (marked), else the smoothed estimate; the run records an estimate for every trained
    factor."""
    aslora, _ = read_runs(results_files)
    layers, values, used = curvature_matrix(aslora)
    assert values.shape == used.shape == (LAYERS, ROUNDS)
    for column, record in enumerate(aslora.rounds):
        assert record.curvature is not None and record.curvature_share is not None
        for row, layer in enumerate(layers):
            factor = record.selection[layer]
            chosen, estimate, error = record.curvature[layer][factor]
            assert estimate is not None and error is not None and error >= 0
            assert used[row, column] == (chosen is not None)
            shown = estimate if chosen is None else chosen
            if shown > 0:
                assert values[row, column] == pytest.approx(np.log10(shown))
            else:
                assert np.isnan(values[row, column])
        uses = [entry[0] is not None for per in record.curvature.values() for entry in per.values()]
        assert record.curvature_share == pytest.approx(sum(uses) / len(uses))


def test_runs_without_scores_get_no_score_map(results_files: list[Path], tmp_path: Path) -> None:
    written = write_report(read_runs(results_files[1:]), tmp_path / "ffa-only")
    assert {SCORES_FILE, CURVATURE_FILE}.isdisjoint(path.name for path in written)
    summary = (tmp_path / "ffa-only" / SUMMARY_FILE).read_text()
    assert SCORES_FILE not in summary and CURVATURE_FILE not in summary


def test_runs_of_the_same_policy_are_told_apart_by_file(results_files: list[Path], tmp_path: Path) -> None:
    copy = tmp_path / "again.json"
    copy.write_bytes(results_files[0].read_bytes())
    labels = [run.label for run in read_runs([results_files[0], copy])]
    assert len(set(labels)) == len(labels)


def test_a_file_of_another_format_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"format": "something-else", "rounds": []}')
    with pytest.raises(ReportError, match="not a results file"):
        read_run(other)
    outcome = CliRunner().invoke(app, ["report", str(other), "--out", str(tmp_path / "out")])
    assert outcome.exit_code != 0
    assert not (tmp_path / "out").exists()


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put the root logger's handlers and level back after a test that reconfigures logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_log_format_json_writes_one_object_per_line(
    results_files: list[Path], tmp_path: Path, restored_logging: None
) -> None:
    arguments = ["--log-format", "json", "--log-level", "INFO", "report", str(results_files[0])]
    outcome = CliRunner().invoke(app, [*arguments, "--out", str(tmp_path / "out")])
    assert outcome.exit_code == 0, outcome.output
    records = [json.loads(line) for line in outcome.output.splitlines() if line.startswith("{")]
    mine = [record for record in records if record["logger"] == "aslora_cli.report"]
    assert len(mine) == 1
    assert mine[0]["level"] == "INFO"
    assert mine[0]["message"] == f"report of 1 run(s) written to {tmp_path / 'out'}"
    assert datetime.datetime.fromisoformat(mine[0]["time"]).tzinfo is not None
