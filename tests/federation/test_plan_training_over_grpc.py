"""LA-LoRA with Laplacian smoothing goes over gRPC as the run plan says: the silos alternate the factors at
the plan's ratio and smooth as the plan asks, so the final adapter is bitwise the in-process one."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from aslora_cli.simulate_grpc import run_grpc_simulation
from aslora_core.config import GradientSmoothing
from aslora_core.evaluation import Evaluation, evaluate
from aslora_core.factors import AdapterState
from aslora_core.simulation import run_simulation
from tests.federation.test_transport_parity import _flat, _settings

ROUNDS = 2
"""Enough for a round to start from a global adapter the silos trained both factors of."""


def test_lalora_with_smoothing_is_bitwise_the_same_over_both_transports(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single_thread: None
) -> None:
    settings = _settings(tiny_model_dir, tmp_path)
    training = dataclasses.replace(
        settings.training,
        smoothing=GradientSmoothing.LAPLACIAN,
        smoothing_strength=0.5,
        alternation_lr_ratio=3.0,
    )
    federation = dataclasses.replace(settings.federation, policy="lalora", rounds=ROUNDS)
    settings = dataclasses.replace(settings, training=training, federation=federation)
    evaluated: list[AdapterState] = []

    def recording_evaluate(*arguments: Any, **keywords: Any) -> Evaluation:
        evaluated.append(arguments[1])
        return evaluate(*arguments, **keywords)

    monkeypatch.setattr("aslora_core.simulation.evaluate", recording_evaluate)
    in_process = run_simulation(settings)
    grpc_run = run_grpc_simulation(settings, tmp_path / "grpc", threads_per_process=1)
    expected, actual = _flat(evaluated[-1]), _flat(grpc_run.final_state)
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), f"{name} differs between the transports"
    for ours, theirs in zip(grpc_run.result.rounds, in_process.rounds, strict=True):
        assert ours.product_error == theirs.product_error and ours.product_error is not None
