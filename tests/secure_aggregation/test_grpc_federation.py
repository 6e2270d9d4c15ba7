"""Secure aggregation over the real federation: a coordinator and four silo processes over mutual TLS, three
deterministic rounds. The final adapter is the plain run's within the fixed-point error, epsilon is the
same, what the coordinator received is uniform over the ring, and its state files hold no silo's update."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import chi2

from aslora_cli.simulate_grpc import GrpcRun, run_grpc_simulation
from aslora_coordinator.secure_round import statistics_keys
from aslora_core.config import DataSettings, SimulationSettings
from aslora_core.evaluation import Evaluation, evaluate
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import AdapterState, StatisticsNoise
from aslora_core.payload_files import update_from_file
from aslora_core.results import RunResult
from aslora_core.simulation import run_simulation
from aslora_rpc.secure_aggregation.fixed_point import RingCodec, UpdateLayout
from aslora_rpc.secure_aggregation_wire import ring_from_bytes
from aslora_silo.secure_round_journal import MASKED_FILE
from aslora_silo.task_journal import UPDATE_FILE
from tests.federation.settings import tiny_simulation
from tests.grpc.helpers import write_tsv
from tests.secure_aggregation.test_uniformity import BINS, FALSE_ALARM, chi_square

SILOS = 4
ROUNDS = 3
LOCAL_STEPS = 3
TRAIN_RECORDS = 180
ADAPTER_ATOL = 1e-6
"""The final adapters agree to this: the fixed-point error of a round's mean is below 2^-24 / N_mean
(about 1e-9 here), and float32 training from adapters that differ by that much stays within float32's
rounding of values near 1 (6e-8) over three rounds."""
SCORE_RTOL = 1e-5
SCORE_ATOL = 1e-12
"""The scores come from statistics decoded to within 2^-24 / N_mean and adapters within ADAPTER_ATOL."""
PLAINTEXT_PROBE_BYTES = 32
"""A silo update's tensors are searched for in the coordinator's files by their first this many bytes."""


def _settings(model_dir: Path, folder: Path, *, secure: bool) -> SimulationSettings:
    data = DataSettings(
        train_path=str(write_tsv(folder / "train.tsv", TRAIN_RECORDS)),
        eval_path=str(write_tsv(folder / "eval.tsv", 40, 5000)),
    )
    settings = tiny_simulation(
        model_dir,
        data,
        silos=SILOS,
        rounds=ROUNDS,
        local_steps=LOCAL_STEPS,
        batch_size=16,
        physical_batch_size=8,
    )
    return dataclasses.replace(
        settings, federation=dataclasses.replace(settings.federation, secure_aggregation=secure)
    )


def _flat(state: AdapterState) -> dict[str, torch.Tensor]:
    flat = {f"{name}.a": pair.a for name, pair in state.layers.items()}
    flat.update({f"{name}.b": pair.b for name, pair in state.layers.items()})
    flat.update({f"head.{name}": tensor for name, tensor in state.head.items()})
    return flat


@pytest.fixture(scope="module")
def runs(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RunResult, AdapterState, GrpcRun, Path, SimulationSettings]:
    """The plain run in process (its result and final adapter) and the secure run over gRPC."""
    folder = tmp_path_factory.mktemp("secure-federation")
    evaluated: list[AdapterState] = []
    with pytest.MonkeyPatch.context() as patch:

        def recording_evaluate(*arguments: Any, **keywords: Any) -> Evaluation:
            evaluated.append(arguments[1])
            return evaluate(*arguments, **keywords)

        patch.setattr("aslora_core.simulation.evaluate", recording_evaluate)
        torch.set_num_threads(1)
        plain = run_simulation(_settings(tiny_model_dir, folder, secure=False))
    secure_settings = _settings(tiny_model_dir, folder, secure=True)
    secure = run_grpc_simulation(secure_settings, folder / "grpc", threads_per_process=1)
    return plain, evaluated[-1], secure, folder / "grpc", secure_settings


def test_the_secure_run_gives_the_plain_adapter_and_epsilon(
    runs: tuple[RunResult, AdapterState, GrpcRun, Path, SimulationSettings],
) -> None:
    plain, plain_state, secure, _, _ = runs
    expected, actual = _flat(plain_state), _flat(secure.final_state)
    assert expected.keys() == actual.keys()
    worst = max(float((actual[name] - tensor).abs().max()) for name, tensor in expected.items())
    assert worst <= ADAPTER_ATOL, f"the adapters differ by {worst}"
    assert secure.result.silo_epsilons == plain.silo_epsilons
    assert secure.result.noise_multipliers == plain.noise_multipliers
    for ours, theirs in zip(secure.result.rounds, plain.rounds, strict=True):
        assert ours.selection == theirs.selection
        # The score saw the pooled statistics with each survivor's public weight and noise: the same
        # smoothed scores and standard errors as from every silo's own statistics.
        assert ours.scores is not None and theirs.scores is not None
        for layer, factors in theirs.scores.items():
            for factor, values in factors.items():
                assert ours.scores[layer][factor] == pytest.approx(values, rel=SCORE_RTOL, abs=SCORE_ATOL)


def test_the_coordinator_receives_uniform_values_and_keeps_no_update(
    runs: tuple[RunResult, AdapterState, GrpcRun, Path, SimulationSettings],
) -> None:
    """Each silo's last masked upload (the bytes it sent, kept in its journal) passes a chi-square test of
    uniformity over the ring and is unlike its plain encoding; the coordinator's state folder holds none of
    the silos' update tensors."""
    _, _, secure, work, settings = runs
    last = secure.result.rounds[-1]
    selection = {layer: FactorChoice(choice) for layer, choice in last.selection.items()}
    keys = statistics_keys(selection, settings.privacy.clipping, settings.training.local_steps)
    layout = UpdateLayout.for_round(secure.final_state, selection, keys)
    critical = chi2.ppf(1.0 - FALSE_ALARM, BINS - 1)
    coordinator_bytes = b"".join(
        path.read_bytes() for path in (work / "coordinator-state").rglob("*") if path.is_file()
    )
    for silo in secure.result.silo_examples:
        state = work / f"{silo}-state"
        masked = ring_from_bytes((state / MASKED_FILE).read_bytes(), layout.length)
        update = update_from_file(state / UPDATE_FILE, StatisticsNoise(steps=LOCAL_STEPS, noise_variance=0.0))
        codec = RingCodec(round_weight=float(sum(secure.result.silo_examples.values())))
        plain = codec.encode(update, layout)
        assert chi_square(masked) < critical
        assert int(np.count_nonzero(masked == plain)) <= 1
        for tensors in update.factors.values():
            for tensor in tensors.values():
                probe = tensor.contiguous().numpy().tobytes()[:PLAINTEXT_PROBE_BYTES]
                assert probe not in coordinator_bytes, f"{silo}'s update is in the coordinator's state"
