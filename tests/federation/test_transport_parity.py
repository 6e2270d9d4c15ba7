"""The same seed in deterministic mode gives a bitwise identical final adapter in process and over gRPC
(with a cosine learning-rate schedule, which the silos follow from the run plan), and the bytes each silo
uploads per round are the same on both transports."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from aslora_cli.simulate_grpc import run_grpc_simulation
from aslora_core.config import (
    DataSettings,
    LrSchedule,
    SimulationSettings,
)
from aslora_core.evaluation import Evaluation, evaluate
from aslora_core.factors import AdapterState
from aslora_core.simulation import run_simulation
from tests.federation.settings import tiny_simulation
from tests.grpc.helpers import write_tsv

ROUNDS = 3


def _settings(model_dir: Path, folder: Path) -> SimulationSettings:
    data = DataSettings(
        train_path=str(write_tsv(folder / "train.tsv", 180)),
        eval_path=str(write_tsv(folder / "eval.tsv", 40, 5000)),
    )
    settings = tiny_simulation(
        model_dir, data, silos=3, rounds=ROUNDS, local_steps=3, batch_size=16, physical_batch_size=8, seed=3
    )
    training = dataclasses.replace(settings.training, lr_schedule=LrSchedule.COSINE)
    return dataclasses.replace(settings, training=training)


def _flat(state: AdapterState) -> dict[str, torch.Tensor]:
    flat = {f"{name}.a": pair.a for name, pair in state.layers.items()}
    flat.update({f"{name}.b": pair.b for name, pair in state.layers.items()})
    flat.update({f"head.{name}": tensor for name, tensor in state.head.items()})
    return flat


def test_deterministic_runs_give_a_bitwise_identical_adapter_over_both_transports(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single_thread: None
) -> None:
    settings = _settings(tiny_model_dir, tmp_path)
    evaluated: list[AdapterState] = []

    def recording_evaluate(*arguments: Any, **keywords: Any) -> Evaluation:
        evaluated.append(arguments[1])
        return evaluate(*arguments, **keywords)

    # The in-process run evaluates every round's global adapter: the last one is the final adapter.
    monkeypatch.setattr("aslora_core.simulation.evaluate", recording_evaluate)
    in_process = run_simulation(settings)
    grpc_run = run_grpc_simulation(settings, tmp_path / "grpc", threads_per_process=1)

    expected, actual = _flat(evaluated[-1]), _flat(grpc_run.final_state)
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), f"{name} differs between the transports"
    over_grpc = grpc_run.result
    assert over_grpc.silo_epsilons == in_process.silo_epsilons
    assert over_grpc.noise_multipliers == in_process.noise_multipliers
    assert over_grpc.initial_loss == in_process.initial_loss
    for ours, theirs in zip(over_grpc.rounds, in_process.rounds, strict=True):
        assert (ours.loss, ours.accuracy, ours.selection) == (theirs.loss, theirs.accuracy, theirs.selection)
        assert ours.scores == theirs.scores and ours.scores is not None
        assert ours.silo_epsilons == theirs.silo_epsilons and ours.silo_epsilons, "each silo's, per round"
        # What went over the wire is exactly the serialized updates, byte for byte.
        assert (ours.upload_bytes, ours.statistics_bytes) == (theirs.upload_bytes, theirs.statistics_bytes)
    assert over_grpc.to_json().keys() == in_process.to_json().keys()
