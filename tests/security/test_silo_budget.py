"""A coordinator that asks for more rounds than a silo's own budget allows: the silo stops at its budget."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aslora_coordinator import admin_queries
from aslora_coordinator.service import CoordinatorService
from aslora_core.config import DEFAULT_ACCOUNTANT, PrivacySettings
from aslora_core.privacy import PrivacyAccountant
from aslora_core.privacy.planning import expected_sample_rate
from aslora_rpc.local_pki import create_local_pki, tls_table
from aslora_rpc.messages import RunState
from aslora_silo.agent import SiloAgent
from aslora_silo.config import load_silo_config
from aslora_silo.ledger import LEDGER_FILE
from tests.grpc.helpers import coordinator_tables, load_config, write_tsv

SILO = "silo-a"
ROUNDS = 6
ROUNDS_WITHIN_BUDGET = 2
TRAIN_RECORDS = 16
BATCH_SIZE = 8
LOCAL_STEPS = 2
SIGMA = 1.0
DELTA = PrivacySettings.delta


class RecordedProgress:
    """What the agent reported: ("start", round, steps), ("step", n), ("done", round, eps)."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def round_started(self, round_index: int, steps: int) -> None:
        self.events.append(("start", round_index, steps))

    def step_done(self, steps_done: int) -> None:
        self.events.append(("step", steps_done))

    def round_finished(self, round_index: int, epsilon: float) -> None:
        self.events.append(("done", round_index, epsilon))


def _epsilon_after(rounds: int) -> float:
    accountant = PrivacyAccountant(DEFAULT_ACCOUNTANT)
    rate = expected_sample_rate(BATCH_SIZE, TRAIN_RECORDS)
    for _ in range(rounds):
        accountant.record(SIGMA, rate, LOCAL_STEPS)
    return accountant.epsilon(DELTA)


def test_the_silo_stops_at_its_own_budget_and_says_why(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    budget = (_epsilon_after(ROUNDS_WITHIN_BUDGET) + _epsilon_after(ROUNDS_WITHIN_BUDGET + 1)) / 2
    pki = create_local_pki(tmp_path / "pki", [SILO])
    tables = coordinator_tables(tiny_model_dir, rounds=ROUNDS)
    tables["privacy"] = {"noise_multiplier": SIGMA, "test_mode": True}
    tables["training"] = {"local_steps": LOCAL_STEPS, "batch_size": BATCH_SIZE, "lr": 0.5}
    tables["tls"] = tls_table(pki.coordinator)
    service = CoordinatorService(load_config(tmp_path / "c.toml", tables), tmp_path / "work", insecure=False)
    try:
        config = tmp_path / "silo.toml"
        config.write_text(
            f'model_path = "{tiny_model_dir}"\n[silo]\nname = "{SILO}"\n'
            f'[coordinator]\naddress = "{service.server.endpoint}"\n'
            f'[data]\ntrain_path = "{write_tsv(tmp_path / "train.tsv", TRAIN_RECORDS)}"\n'
            f"[privacy]\nmax_epsilon = {budget!r}\ntest_mode = true\n"
            "[acceptance]\nallow_partial_runs = true\n"
            '[health]\nlisten = "127.0.0.1:0"\n[connection]\nwait_seconds = 1\n[tls]\n'
            + "".join(f'{k} = "{v}"\n' for k, v in tls_table(pki.silos[SILO]).items())
        )
        progress = RecordedProgress()
        agent = SiloAgent(load_silo_config(config), tmp_path / "state", insecure=False, progress=progress)
        with caplog.at_level(logging.WARNING, logger="aslora_silo"):
            end = agent.run(max_runs=1)
        [view] = admin_queries.silo_views(service.orchestrator.observe())
    finally:
        service.shutdown()

    assert end is not None and end.state is RunState.STOPPED
    assert "past its own budget" in end.reason
    on_disk = PrivacyAccountant.load(tmp_path / "state" / LEDGER_FILE, DEFAULT_ACCOUNTANT).epsilon(DELTA)
    assert on_disk <= budget
    assert on_disk == pytest.approx(_epsilon_after(ROUNDS_WITHIN_BUDGET), rel=1e-12)
    assert view.rounds_participated == ROUNDS_WITHIN_BUDGET
    assert view.declined_reason is not None and "past its own budget" in view.declined_reason
    assert any("leaves run" in r.message and "past its own budget" in r.getMessage() for r in caplog.records)
    expected: list[tuple[object, ...]] = []
    for round_index in range(ROUNDS_WITHIN_BUDGET):
        expected += [("start", round_index, LOCAL_STEPS)]
        expected += [("step", step) for step in range(1, LOCAL_STEPS + 1)]
        expected += [("done", round_index, pytest.approx(_epsilon_after(round_index + 1), rel=1e-12))]
    assert progress.events == expected
