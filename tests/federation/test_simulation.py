"""The in-process simulation end to end on a tiny model, through the library and the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aslora_cli.main import app
from aslora_core.config import DataSettings, SimulationSettings
from aslora_core.policy_traits import POLICY_NAMES
from aslora_core.simulation import run_simulation
from tests.federation.settings import tiny_simulation
from tests.grpc.helpers import write_tsv

TRAIN_RECORDS = 480
EVAL_RECORDS = 96
BATCH_SIZE = 32
USAGE_EXIT_CODE = 2
"""Click's exit status for a bad parameter."""


@pytest.fixture(scope="module")
def tsv_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tsv")
    return write_tsv(folder / "train.tsv", TRAIN_RECORDS, 0), write_tsv(
        folder / "eval.tsv", EVAL_RECORDS, 5000
    )


def _settings(
    model_dir: Path, tsv_data: tuple[Path, Path], *, silos: int, rounds: int, local_steps: int
) -> SimulationSettings:
    train, evaluation = tsv_data
    data = DataSettings(train_path=str(train), eval_path=str(evaluation))
    return tiny_simulation(
        model_dir,
        data,
        silos=silos,
        rounds=rounds,
        local_steps=local_steps,
        batch_size=BATCH_SIZE,
        physical_batch_size=BATCH_SIZE,
    )


def test_three_silos_three_rounds_lower_the_evaluation_loss(
    tiny_model_dir: Path, tsv_data: tuple[Path, Path]
) -> None:
    result = run_simulation(_settings(tiny_model_dir, tsv_data, silos=3, rounds=3, local_steps=4))
    assert len(result.rounds) == 3
    assert result.initial_loss is not None
    assert result.rounds[-1].loss < result.initial_loss
    assert 0 < result.epsilon <= 8.0
    assert set(result.silo_epsilons) == {"silo-00", "silo-01", "silo-02"}
    for record in result.rounds:  # AS-LoRA records what chose each next round's factors
        assert record.scores is not None and sorted(record.scores) == sorted(record.selection)
        assert all(set(per_factor) == {"A", "B"} for per_factor in record.scores.values())
        assert all(spread >= 0 for per_factor in record.scores.values() for _, spread in per_factor.values())


def test_an_evaluation_interval_evaluates_and_records_only_the_rounds_it_names(
    tiny_model_dir: Path, tsv_data: tuple[Path, Path]
) -> None:
    settings = _settings(tiny_model_dir, tsv_data, silos=2, rounds=5, local_steps=2)
    every_second = dataclasses.replace(settings.federation, evaluation_interval=2)
    result = run_simulation(dataclasses.replace(settings, federation=every_second))
    assert [record.round for record in result.rounds] == [1, 3, 4], "every second round, and the last"
    assert result.epsilon == max(result.silo_epsilons.values()) > 0


def test_cli_writes_the_results_json(
    tiny_model_dir: Path, tsv_data: tuple[Path, Path], tmp_path: Path
) -> None:
    train, evaluation = tsv_data
    output = tmp_path / "run.json"
    args = [
        "simulate",
        "--policy",
        "ffa",
        "--silos",
        "2",
        "--rounds",
        "2",
        "--local-steps",
        "2",
        "--batch-size",
        "16",
        "--physical-batch-size",
        "16",
        "--epsilon",
        "5",
        "--lr",
        "0.5",
        "--lr-schedule",
        "cosine",
        "--rank",
        "4",
        "--alpha",
        "8",
        "--max-length",
        "16",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(train),
        "--eval-data",
        str(evaluation),
        "--deterministic",
        "--quiet",
        "--head-pooling",
        "mean",
        "--head-label-text",
        "a negative review",
        "--head-label-text",
        "a positive review",
        "--output",
        str(output),
    ]
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    assert "final accuracy" in outcome.output
    document = json.loads(output.read_text())
    for key in ("policy", "final_accuracy", "epsilon", "silo_epsilons", "rounds"):
        assert key in document
    assert document["policy"] == "ffa"
    assert document["epsilon"] == max(document["silo_epsilons"].values())
    first = document["rounds"][0]
    for key in ("round", "accuracy", "loss", "epsilon", "b_fraction", "upload_bytes", "selection"):
        assert key in first
    assert set(first["selection"].values()) == {"B"}
    assert document["settings"]["training"]["lr_schedule"] == "cosine"
    lora = document["settings"]["lora"]
    assert (lora["head_pooling"], lora["head_label_texts"]) == (
        "mean",
        ["a negative review", "a positive review"],
    )


def test_cli_rejects_an_unknown_policy() -> None:
    outcome = CliRunner().invoke(app, ["simulate", "--policy", "nonsense"], env={"COLUMNS": "1000"})
    assert outcome.exit_code == USAGE_EXIT_CODE
    assert f"unknown policy 'nonsense'; choose from {', '.join(POLICY_NAMES)}" in outcome.output


def test_cli_runs_in_bfloat16_and_records_the_precision(
    tiny_model_dir: Path, tsv_data: tuple[Path, Path], tmp_path: Path
) -> None:
    train, evaluation = tsv_data
    output = tmp_path / "run.json"
    args = [
        "simulate",
        "--transport",
        "inproc",
        "--precision",
        "bfloat16",
        *("--silos", "2", "--rounds", "2", "--local-steps", "2", "--batch-size", "16"),
        *(
            "--physical-batch-size",
            "16",
            "--epsilon",
            "5",
            "--rank",
            "4",
            "--alpha",
            "8",
            "--max-length",
            "16",
        ),
        *("--model", str(tiny_model_dir), "--data", str(train), "--eval-data", str(evaluation)),
        *(
            "--head-pooling",
            "mean",
            "--head-label-text",
            "a negative review",
            "--head-label-text",
            "a positive one",
        ),
        *("--deterministic", "--quiet", "--output", str(output)),
    ]
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(output.read_text())
    assert document["settings"]["compute"]["precision"] == "bfloat16"
    assert all(math.isfinite(record["loss"]) for record in document["rounds"])
