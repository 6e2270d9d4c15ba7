"""A coordinator that asks a silo for less privacy than the silo's own config grants, over mutual TLS.

The coordinator here is the real one, configured as a hostile operator would configure it: a task without
noise, test-mode (seeded) noise, a delta above the silo's, a schedule past the silo's budget, another
accountant. Each time the silo refuses with its reason, which the operator reads in the admin view; it
encodes no record, builds no model, trains nothing, and leaves its privacy ledger byte for byte as it was.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import pytest

from aslora_coordinator.admin_client import AdminClient
from aslora_coordinator.service import CoordinatorService
from aslora_core.config import AccountantKind
from aslora_core.privacy import PrivacyAccountant
from aslora_rpc.channels import open_channel
from aslora_rpc.local_pki import LocalPki, create_local_pki, tls_files, tls_table
from aslora_rpc.messages import Enrollment, Registration, RunPlan, RunState
from aslora_rpc.protocol import PROTOCOL_VERSION
from aslora_silo.agent import SiloAgent
from aslora_silo.client import CoordinatorClient
from aslora_silo.config import load_silo_config
from aslora_silo.errors import SiloError
from aslora_silo.ledger import LEDGER_FILE
from aslora_silo.task_journal import JOURNAL_FILE
from tests.grpc.helpers import coordinator_tables, load_config, silo_privacy_toml, small_run_plan, write_tsv

SILO = "silo-a"
TRAIN_RECORDS = 16
SIGMA = 1.0
SILO_BUDGET = 50.0
LARGE_DELTA = 1e-3
"""Above the silo's default max_delta (1e-5): any epsilon looks small at a delta this large."""
TINY_BUDGET = 0.01
"""A budget that the first task of the run already exceeds."""
EARLIER_SIGMA, EARLIER_RATE, EARLIER_STEPS = 2.0, 0.5, 4
"""What the silo's ledger holds from an earlier run before the hostile one starts."""

HOSTILE_PLANS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "a task without noise": ({"noise_multiplier": 0.0}, {}, "noise multiplier 0"),
    "test-mode noise": ({"noise_multiplier": SIGMA, "test_mode": True}, {}, "declares no test mode"),
    "a delta above the silo's": (
        {"noise_multiplier": SIGMA, "delta": 1e-3},
        {},
        "above this silo's max_delta",
    ),
    "a schedule past the silo's budget": (
        {"noise_multiplier": SIGMA},
        {"max_epsilon": TINY_BUDGET},
        "cannot pay one round",
    ),
    "another accountant": ({"noise_multiplier": SIGMA, "accountant": "rdp"}, {}, "accounts with rdp"),
}
"""The coordinator's [privacy] table, the silo's [privacy] overrides, and the reason the silo gives."""


def _silo_config(path: Path, model: Path, address: str, pki: LocalPki, privacy: dict[str, Any]) -> Path:
    path.write_text(
        f'model_path = "{model}"\n[silo]\nname = "{SILO}"\n[coordinator]\naddress = "{address}"\n'
        f'[data]\ntrain_path = "{write_tsv(path.parent / "train.tsv", TRAIN_RECORDS)}"\n'
        '[health]\nlisten = "127.0.0.1:0"\n[connection]\nwait_seconds = 1\n'
        + silo_privacy_toml(**{"max_epsilon": SILO_BUDGET, "test_mode": False, **privacy})
        + "[tls]\n"
        + "".join(f'{key} = "{value}"\n' for key, value in tls_table(pki.silos[SILO]).items())
    )
    return path


def _earlier_ledger(state_dir: Path) -> bytes:
    """Write the ledger of an earlier run into the silo's state folder; its bytes."""
    state_dir.mkdir()
    earlier = PrivacyAccountant(AccountantKind.RDP)
    earlier.record(EARLIER_SIGMA, EARLIER_RATE, EARLIER_STEPS)
    earlier.save(state_dir / LEDGER_FILE)
    return (state_dir / LEDGER_FILE).read_bytes()


@pytest.mark.parametrize("case", list(HOSTILE_PLANS))
def test_the_silo_refuses_a_plan_or_task_that_weakens_its_guarantee(
    tiny_model_dir: Path, tmp_path: Path, case: str
) -> None:
    coordinator_privacy, silo_privacy, reason = HOSTILE_PLANS[case]
    pki = create_local_pki(tmp_path / "pki", [SILO])
    tables = coordinator_tables(tiny_model_dir)
    tables["privacy"] = coordinator_privacy
    tables["tls"] = tls_table(pki.coordinator)
    service = CoordinatorService(load_config(tmp_path / "c.toml", tables), tmp_path / "work", insecure=False)
    state_dir = tmp_path / "state"
    ledger_before = _earlier_ledger(state_dir)
    try:
        config = _silo_config(
            tmp_path / "silo.toml", tiny_model_dir, str(service.server.endpoint), pki, silo_privacy
        )
        agent = SiloAgent(load_silo_config(config), state_dir, insecure=False)
        end = agent.run(max_runs=1)
        operator = open_channel(service.server.endpoint, tls_files(pki.operator), insecure=False)
        with operator:
            [view] = AdminClient(operator).silos()
    finally:
        service.shutdown()

    assert end is not None and end.state is RunState.STOPPED
    assert reason in end.reason
    assert view.silo_id == SILO
    assert view.declined_reason is not None and reason in view.declined_reason
    assert view.rounds_participated == 0
    assert agent.run_tasks is None, "declined before registering: no record encoded, no model built"
    assert not (state_dir / JOURNAL_FILE).exists(), "no task charged"
    assert (state_dir / LEDGER_FILE).read_bytes() == ledger_before


class _RestartedCoordinator:
    """A coordinator client whose registration answers with `plan`, as a restarted coordinator would."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan

    def register(self, registration: Registration) -> Enrollment:
        return Enrollment(PROTOCOL_VERSION, registration.silo_name, self.plan)


def test_a_restarted_coordinator_cannot_change_the_plan_the_silo_accepted(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    pki = create_local_pki(tmp_path / "pki", [SILO])
    config = _silo_config(tmp_path / "silo.toml", tiny_model_dir, "127.0.0.1:7443", pki, {"test_mode": True})
    agent = SiloAgent(load_silo_config(config), tmp_path / "state", insecure=False)
    accepted = dataclasses.replace(
        small_run_plan(rounds=2, local_steps=1, test_mode=False), base_model_fingerprint=agent.fingerprint
    )
    joined = Enrollment(PROTOCOL_VERSION, SILO, accepted)
    same = _RestartedCoordinator(accepted)
    assert agent.registrar.register_again(cast(CoordinatorClient, same), joined).plan == accepted
    seeded = dataclasses.replace(accepted, privacy=dataclasses.replace(accepted.privacy, test_mode=True))
    with pytest.raises(SiloError, match=r"after a coordinator restart: .* under another plan"):
        agent.registrar.register_again(cast(CoordinatorClient, _RestartedCoordinator(seeded)), joined)
