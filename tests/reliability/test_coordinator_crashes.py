"""Kill the coordinator at its crash points and with SIGKILL, restart it on the same --state-dir, and the
run completes with the very adapter (bit for bit), selections, losses and epsilons of an uninterrupted run
of the same seed (the in-process simulation, which `test_transport_parity` shows equal to an uninterrupted
run over gRPC); every silo's privacy charges appear exactly once, in the coordinator's ledger and in the
silo's own."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from aslora_coordinator.crash_points import CRASH_EXIT_CODE, CrashPoint
from aslora_core.config import DataSettings, SimulationSettings
from aslora_core.evaluation import Evaluation, evaluate
from aslora_core.factors import AdapterState
from aslora_core.results import RunResult
from aslora_core.simulation import run_simulation, silo_ids
from tests.federation.settings import tiny_simulation
from tests.grpc.helpers import write_tsv
from tests.reliability.harness import Federation

ROUNDS = 3
SILOS = 2
"""Two silos keep the test short (process start-up dominates); the other reliability test runs three."""
LOCAL_STEPS = 3
RUN_TIMEOUT_SECONDS = 120.0
CRASH_TIMEOUT_SECONDS = 60.0
STAGES: tuple[tuple[CrashPoint, int | None], ...] = (
    (CrashPoint.DURING_DOWNLOAD, None),
    (CrashPoint.DURING_UPLOAD, None),
    (CrashPoint.BEFORE_AGGREGATION, 0),
    (CrashPoint.AFTER_CHECKPOINT, 0),
    (CrashPoint.AFTER_AGGREGATION, 1),
)
"""Crash points in the order one run meets them (the first three in round 0, the fourth right after
round 0's checkpoint, the fifth in round 1)."""
KILLED_IN_ROUND = 2
"""The coordinator is SIGKILLed once every silo has trained and charged this round and stopped itself at
its stall point; the silos go on once the coordinator has restarted, so their updates reach it in either
order with its reopening of the round."""


def _settings(model_dir: Path, folder: Path) -> SimulationSettings:
    data = DataSettings(
        train_path=str(write_tsv(folder / "train.tsv", 120)),
        eval_path=str(write_tsv(folder / "eval.tsv", 24, 5000)),
    )
    return tiny_simulation(
        model_dir,
        data,
        silos=SILOS,
        rounds=ROUNDS,
        local_steps=LOCAL_STEPS,
        batch_size=16,
        physical_batch_size=8,
    )


def _uninterrupted(
    settings: SimulationSettings, monkeypatch: pytest.MonkeyPatch
) -> tuple[RunResult, AdapterState]:
    """The in-process run and its final adapter (the last one it evaluates)."""
    evaluated: list[AdapterState] = []

    def recording_evaluate(*arguments: Any, **keywords: Any) -> Evaluation:
        evaluated.append(arguments[1])
        return evaluate(*arguments, **keywords)

    with monkeypatch.context() as patch:
        patch.setattr("aslora_core.simulation.evaluate", recording_evaluate)
        result = run_simulation(settings)
    return result, evaluated[-1]


def test_a_coordinator_killed_again_and_again_finishes_the_run_exactly(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single_thread: None
) -> None:
    settings = _settings(tiny_model_dir, tmp_path)
    expected, expected_state = _uninterrupted(settings, monkeypatch)
    federation = Federation.of_simulation(tmp_path, settings)
    try:
        for number, (point, round_index) in enumerate(STAGES):
            federation.start_coordinator(point.value, round_index)
            if number == 0:
                for index in range(SILOS):
                    federation.start_silo(index, stall_round=KILLED_IN_ROUND)
            status = federation.wait_coordinator_exit(CRASH_TIMEOUT_SECONDS)
            assert status == CRASH_EXIT_CODE, f"{point}: exit {status}\n{federation.log_tail()}"
        federation.start_coordinator()
        for index in range(SILOS):
            federation.wait_silo_stopped(index, CRASH_TIMEOUT_SECONDS)
            assert federation.has_charged(index, KILLED_IN_ROUND)
        federation.kill_coordinator()
        federation.start_coordinator()
        for index in range(SILOS):
            federation.signal_silo(index, signal.SIGCONT)
        federation.wait_silos_exit(RUN_TIMEOUT_SECONDS)
        assert federation.wait_coordinator_exit(RUN_TIMEOUT_SECONDS) == 0
        resumed = federation.checkpoint()
        ledgers = dict(zip(silo_ids(SILOS), (federation.silo_ledger(i) for i in range(SILOS)), strict=True))
    finally:
        federation.close()

    log = federation.coordinator_log.read_text()
    for index in range(SILOS):
        silo_log = (federation.work / f"silo-{index}.log").read_text()
        assert f"round {KILLED_IN_ROUND} was trained already; sending its kept update" in silo_log
    assert log.count("resuming run") == len(STAGES) + 1, "every restart resumed the checkpointed run"
    assert resumed.rounds_completed == ROUNDS
    state = resumed.global_state
    for name, pair in expected_state.layers.items():
        assert torch.equal(state.layers[name].a, pair.a), f"{name}.a differs"
        assert torch.equal(state.layers[name].b, pair.b), f"{name}.b differs"
    for name, tensor in expected_state.head.items():
        assert torch.equal(state.head[name], tensor), f"head {name} differs"
    results = federation.results()
    assert results["silo_epsilons"] == expected.silo_epsilons
    for ours, theirs in zip(results["rounds"], expected.rounds, strict=True):
        assert (ours["loss"], ours["accuracy"], ours["selection"]) == (
            theirs.loss,
            theirs.accuracy,
            theirs.selection,
        )
    for silo in resumed.silos:
        # The coordinator's recomputation and the silo's own ledger hold the same charges: each round's
        # once, none lost and none counted twice across the seven coordinator processes.
        assert silo.ledger == ledgers[silo.silo_id]
        assert sum(event["steps"] for event in silo.ledger["events"]) == ROUNDS * LOCAL_STEPS
        assert silo.rounds_participated == ROUNDS
