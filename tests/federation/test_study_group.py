"""The policies of one study group under one plan: the same epsilon, LA-LoRA's product error, smoothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aslora_cli.main import app
from aslora_core.config import DataSettings, GradientSmoothing, SimulationSettings
from aslora_core.results import RunResult
from aslora_core.simulation import run_simulation
from tests.federation.settings import TINY_EPSILON, tiny_simulation
from tests.grpc.helpers import write_tsv

TRAIN_RECORDS = 240
EVAL_RECORDS = 48
BATCH_SIZE = 32
ROUNDS = 2
GROUP = ("ffa", "rolora", "lalora", "aslora")
"""The policies the learning-quality study compares (issue 25)."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DataSettings:
    folder = tmp_path_factory.mktemp("study-group")
    train = write_tsv(folder / "train.tsv", TRAIN_RECORDS, 0)
    evaluation = write_tsv(folder / "eval.tsv", EVAL_RECORDS, 5000)
    return DataSettings(train_path=str(train), eval_path=str(evaluation))


def _settings(model_dir: Path, data: DataSettings, policy: str, *, smoothing: bool) -> SimulationSettings:
    settings = tiny_simulation(
        model_dir,
        data,
        silos=2,
        rounds=ROUNDS,
        local_steps=2,
        batch_size=BATCH_SIZE,
        physical_batch_size=BATCH_SIZE,
        policy=policy,
    )
    if not smoothing:
        return settings
    training = dataclasses.replace(settings.training, smoothing=GradientSmoothing.LAPLACIAN)
    return dataclasses.replace(settings, training=training)


@pytest.fixture(scope="module")
def runs(tiny_model_dir: Path, data: DataSettings) -> dict[tuple[str, bool], RunResult]:
    return {
        (policy, smoothing): run_simulation(_settings(tiny_model_dir, data, policy, smoothing=smoothing))
        for policy in GROUP
        for smoothing in (False, True)
        if policy != "rolora" or not smoothing
    }


def test_every_policy_of_the_group_spends_the_same_epsilon(runs: dict[tuple[str, bool], RunResult]) -> None:
    epsilons = {key: result.epsilon for key, result in runs.items()}
    reference = epsilons["ffa", False]
    assert 0 < reference <= TINY_EPSILON
    assert set(epsilons.values()) == {reference}, epsilons
    silo_epsilons = {key: result.silo_epsilons for key, result in runs.items()}
    assert all(value == silo_epsilons["ffa", False] for value in silo_epsilons.values())


def test_lalora_trains_both_factors_and_reports_the_product_error(
    runs: dict[tuple[str, bool], RunResult],
) -> None:
    for record in runs["lalora", False].rounds:
        assert set(record.selection.values()) == {"AB"}
        assert record.product_error is not None and record.product_error > 0
    for record in runs["ffa", False].rounds:
        assert record.product_error is None


def test_smoothing_changes_what_is_learned_not_what_is_spent(
    runs: dict[tuple[str, bool], RunResult],
) -> None:
    for policy in ("ffa", "lalora", "aslora"):
        plain, smoothed = runs[policy, False], runs[policy, True]
        assert smoothed.epsilon == plain.epsilon
        assert [r.loss for r in smoothed.rounds] != [r.loss for r in plain.rounds], policy


def test_the_cli_runs_lalora_with_smoothing_and_records_both(
    tiny_model_dir: Path, data: DataSettings, tmp_path: Path
) -> None:
    output = tmp_path / "run.json"
    args = [
        "simulate",
        *("--transport", "inproc", "--policy", "lalora", "--smoothing", "laplacian"),
        *("--smoothing-strength", "0.5", "--alternation-lr-ratio", "3"),
        *("--silos", "2", "--rounds", "1", "--local-steps", "2", "--batch-size", "16"),
        *("--physical-batch-size", "16", "--rank", "4", "--alpha", "8", "--max-length", "16"),
        *("--model", str(tiny_model_dir), "--data", str(data.train_path), "--eval-data", str(data.eval_path)),
        *("--deterministic", "--quiet", "--output", str(output)),
    ]
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(output.read_text())
    assert document["policy"] == "lalora"
    training = document["settings"]["training"]
    assert (training["smoothing"], training["smoothing_strength"], training["alternation_lr_ratio"]) == (
        "laplacian",
        0.5,
        3.0,
    )
    assert document["rounds"][0]["product_error"] > 0
