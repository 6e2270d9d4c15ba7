"""Kill the coordinator at its crash points and with SIGKILL, restart it on the same --state-dir, and the
run completes with the very adapter (bit for bit) of an uninterrupted run of the same seed; every silo's
privacy charges appear exactly once, in the coordinator's ledger and in the silo's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from aslora_coordinator.crash_points import CRASH_EXIT_CODE, CrashPoint
from aslora_coordinator.state import CoordinatorSnapshot
from tests.reliability.harness import LOCAL_STEPS, Federation, silo_name, wait_until

ROUNDS = 3
SILOS = 2
"""Two silos keep the test short (process start-up dominates); the other reliability test runs three."""
DEADLINE_SECONDS = 120.0
"""Long: in these tests every silo reports; a round closes when all have, never at its deadline."""
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
"""The coordinator is SIGKILLed once every silo has charged (and so is training) this round."""


def _federation(work: Path, model_dir: Path) -> Federation:
    return Federation(work, model_dir, rounds=ROUNDS, min_silos=SILOS, deadline_seconds=DEADLINE_SECONDS)


@pytest.fixture(scope="module")
def uninterrupted(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CoordinatorSnapshot]:
    """The final checkpoint of a run nobody interrupts."""
    federation = _federation(tmp_path_factory.mktemp("uninterrupted"), tiny_model_dir)
    try:
        federation.start_coordinator()
        for index in range(SILOS):
            federation.start_silo(index)
        federation.wait_silos_exit(RUN_TIMEOUT_SECONDS)
        assert federation.wait_coordinator_exit(RUN_TIMEOUT_SECONDS) == 0
        yield federation.checkpoint()
    finally:
        federation.close()


def test_a_coordinator_killed_again_and_again_finishes_the_run_exactly(
    uninterrupted: CoordinatorSnapshot, tiny_model_dir: Path, tmp_path: Path
) -> None:
    federation = _federation(tmp_path, tiny_model_dir)
    try:
        for number, (point, round_index) in enumerate(STAGES):
            federation.start_coordinator(point.value, round_index)
            if number == 0:
                for index in range(SILOS):
                    federation.start_silo(index)
            status = federation.wait_coordinator_exit(CRASH_TIMEOUT_SECONDS)
            assert status == CRASH_EXIT_CODE, f"{point}: exit {status}\n{federation.log_tail()}"
        federation.start_coordinator()
        wait_until(
            lambda: all(federation.has_charged(i, KILLED_IN_ROUND) for i in range(SILOS)),
            CRASH_TIMEOUT_SECONDS,
            f"charge of round {KILLED_IN_ROUND} at every silo",
            federation,
        )
        federation.kill_coordinator()
        federation.start_coordinator()
        federation.wait_silos_exit(RUN_TIMEOUT_SECONDS)
        assert federation.wait_coordinator_exit(RUN_TIMEOUT_SECONDS) == 0
        resumed = federation.checkpoint()
        ledgers = {silo_name(i): federation.silo_ledger(i) for i in range(SILOS)}
    finally:
        federation.close()

    log = federation.coordinator_log.read_text()
    assert log.count("resuming run") == len(STAGES) + 1, "every restart resumed the checkpointed run"
    assert resumed.rounds_completed == ROUNDS
    assert resumed.policy_state == uninterrupted.policy_state
    for name, pair in uninterrupted.global_state.layers.items():
        assert torch.equal(resumed.global_state.layers[name].a, pair.a), f"{name}.a differs"
        assert torch.equal(resumed.global_state.layers[name].b, pair.b), f"{name}.b differs"
    for name, tensor in uninterrupted.global_state.head.items():
        assert torch.equal(resumed.global_state.head[name], tensor), f"head {name} differs"
    for silo in resumed.silos:
        # The coordinator's recomputation and the silo's own ledger hold the same charges: each round's
        # once, none lost and none counted twice across the six coordinator processes.
        assert silo.ledger == ledgers[silo.silo_id]
        assert sum(event["steps"] for event in silo.ledger["history"]) == ROUNDS * LOCAL_STEPS
        assert silo.rounds_participated == ROUNDS
    assert [s.ledger for s in resumed.silos] == [s.ledger for s in uninterrupted.silos]
