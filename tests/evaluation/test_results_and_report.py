"""The silos' pooled evaluations in the results file (beside the coordinator's own rounds, readable from
files written before them) and in `aslora report`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.image import imread
from typer.testing import CliRunner

from aslora_cli.main import app
from aslora_core.federated_evaluation import EvaluationRelease, EvaluationSums, combine
from aslora_core.federated_report import FEDERATED_FILE
from aslora_core.reporting import SUMMARY_FILE
from aslora_core.results import FEDERATED_KEY, RunResult, read_results

LOSS_BOUND = 2.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run() -> RunResult:
    result = RunResult(
        policy="aslora", score="norm", settings={}, silo_examples={"a": 10, "b": 12}, noise_multipliers={}
    )
    for round_index, correct in enumerate((11.0, 15.5, 18.25)):
        releases = [
            EvaluationRelease("a", EvaluationSums(9.0 - round_index, correct / 2, 12.0), 20.0),
            EvaluationRelease("b", EvaluationSums(8.5 - round_index, correct / 2, 12.5), 25.0),
        ]
        result.federated_evaluations.append(combine(round_index, releases, ["c"], LOSS_BOUND))
    return result


def test_federated_evaluations_round_trip_through_the_results_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    _run().write(path)
    document = json.loads(path.read_text())
    assert document[FEDERATED_KEY][0]["silos"]["b"] == {
        "loss_sum": 8.5,
        "correct": 5.5,
        "examples": 12.5,
        "noise_multiplier": 25.0,
    }
    assert read_results(path).federated_evaluations == _run().federated_evaluations


def test_a_results_file_from_before_silo_evaluation_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    document = _run().to_json()
    del document[FEDERATED_KEY]
    path.write_text(json.dumps(document))
    assert read_results(path).federated_evaluations == []


def test_the_report_draws_the_federated_figures_and_whom_they_cover(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    _run().write(path)
    out = tmp_path / "report"
    outcome = CliRunner().invoke(app, ["report", str(path), "--out", str(out)])
    assert outcome.exit_code == 0, outcome.output
    picture = out / FEDERATED_FILE
    assert picture.read_bytes()[: len(PNG_SIGNATURE)] == PNG_SIGNATURE
    assert float(np.std(imread(picture))) > 0
    summary = (out / SUMMARY_FILE).read_text()
    # The last round: 18.25 correct and (7 + 6.5) loss over 12 + 12.5 examples, silo c declined.
    assert f"| aslora (norm) | 2 | {18.25 / 24.5:.4g} | {13.5 / 24.5:.4g} | 2 / 3 | c |" in summary
    assert f"({FEDERATED_FILE})" in summary
