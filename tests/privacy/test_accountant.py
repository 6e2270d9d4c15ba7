"""The stateful privacy ledger: merging, budget checks, serialization and atomic persistence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aslora_core.config import DEFAULT_ACCOUNTANT, AccountantKind
from aslora_core.privacy import FORMAT_VERSION, PrivacyAccountant, PrivacyEvent, epsilon_spent

DELTA = 1e-5


def _ledger(kind: AccountantKind = AccountantKind.RDP) -> PrivacyAccountant:
    accountant = PrivacyAccountant(kind)
    accountant.record(1.0, 0.01, 50)
    accountant.record(1.3, 0.02, 20)
    accountant.record(0.9, 0.01)
    return accountant


def test_consecutive_identical_steps_merge() -> None:
    accountant = PrivacyAccountant()
    accountant.record(1.0, 0.01, 5)
    accountant.record(1.0, 0.01)
    accountant.record(1.0, 0.02, 3)
    accountant.record(1.0, 0.01, 2)
    accountant.record(1.0, 0.01, 0)
    assert accountant.history == (
        PrivacyEvent(1.0, 0.01, 6),
        PrivacyEvent(1.0, 0.02, 3),
        PrivacyEvent(1.0, 0.01, 2),
    )
    assert accountant.steps_taken == 11


def test_constructor_merges_given_history() -> None:
    accountant = PrivacyAccountant(
        AccountantKind.PRV,
        [PrivacyEvent(1.0, 0.01, 2), PrivacyEvent(1.0, 0.01, 3), PrivacyEvent(2.0, 0.1, 0)],
    )
    assert accountant.history == (PrivacyEvent(1.0, 0.01, 5),)
    assert accountant.kind is AccountantKind.PRV


def test_record_rejects_bad_steps() -> None:
    accountant = PrivacyAccountant()
    with pytest.raises(ValueError):
        accountant.record(1.0, 0.01, -1)
    with pytest.raises(ValueError):
        accountant.record(1.0, 0.0, 1)
    assert accountant.history == ()


def test_epsilon_follows_the_history() -> None:
    accountant = PrivacyAccountant()
    assert accountant.epsilon(DELTA) == 0.0
    accountant.record(1.0, 0.01, 100)
    first = accountant.epsilon(DELTA)
    assert first == epsilon_spent(accountant.history, DELTA, DEFAULT_ACCOUNTANT)
    accountant.record(1.0, 0.01, 100)
    assert accountant.epsilon(DELTA) > first
    assert accountant.epsilon(DELTA * 10) < accountant.epsilon(DELTA)


def test_step_by_step_equals_one_record() -> None:
    one_by_one = PrivacyAccountant()
    for _ in range(30):
        one_by_one.record(1.1, 0.02)
    at_once = PrivacyAccountant()
    at_once.record(1.1, 0.02, 30)
    assert one_by_one.history == at_once.history
    assert one_by_one.epsilon(DELTA) == at_once.epsilon(DELTA)


def test_would_exceed_checks_the_plan_without_recording_it() -> None:
    accountant = _ledger()
    before = accountant.history
    after_plan = epsilon_spent([*before, PrivacyEvent(1.0, 0.01, 40)], DELTA, AccountantKind.RDP)
    assert not accountant.would_exceed(1.0, 0.01, 40, DELTA, budget=after_plan)
    assert accountant.would_exceed(1.0, 0.01, 40, DELTA, budget=after_plan * 0.99)
    assert accountant.would_exceed(0.0, 0.01, 1, DELTA, budget=1e9)
    assert not accountant.would_exceed(1.0, 0.01, 0, DELTA, budget=accountant.epsilon(DELTA))
    assert accountant.history == before


@pytest.mark.parametrize("kind", list(AccountantKind))
def test_dict_round_trip_is_exact_and_json_able(kind: AccountantKind) -> None:
    accountant = _ledger(kind)
    accountant.record(0.1 + 0.2, 1 / 3, 7)
    data = json.loads(json.dumps(accountant.to_dict()))
    assert data["format_version"] == FORMAT_VERSION
    assert "kind" not in data
    restored = PrivacyAccountant.from_dict(data, kind)
    assert restored.kind is kind
    assert restored.history == accountant.history


def test_a_ledger_outlives_a_change_of_accountant() -> None:
    kept_by_rdp = _ledger(AccountantKind.RDP).to_dict()
    read_by_prv = PrivacyAccountant.from_dict(kept_by_rdp, AccountantKind.PRV)
    assert read_by_prv.kind is AccountantKind.PRV
    assert read_by_prv.history == _ledger().history
    assert read_by_prv.epsilon(DELTA) == epsilon_spent(_ledger().history, DELTA, AccountantKind.PRV)


def test_a_version_1_ledger_is_read_with_the_readers_accountant() -> None:
    events = [{"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 40}]
    version_1 = {"format_version": 1, "kind": AccountantKind.PRV.value, "history": events}
    read = PrivacyAccountant.from_dict(version_1, AccountantKind.RDP)
    assert read.kind is AccountantKind.RDP
    assert read.history == (PrivacyEvent(1.0, 0.01, 40),)


@pytest.mark.parametrize(
    "change",
    [
        {"format_version": FORMAT_VERSION + 1},
        {"format_version": None},
        {"format_version": str(FORMAT_VERSION)},
        {"events": [{"noise_multiplier": 1.0, "sample_rate": 0.01}]},
        {"events": [{"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 1.5}]},
        {"events": [{"noise_multiplier": -1.0, "sample_rate": 0.01, "steps": 1}]},
        {"events": 3},
    ],
)
def test_from_dict_rejects_unknown_versions_and_bad_content(change: dict[str, object]) -> None:
    data = {**_ledger().to_dict(), **change}
    with pytest.raises(ValueError):
        PrivacyAccountant.from_dict(data, AccountantKind.RDP)


def test_from_dict_rejects_missing_version() -> None:
    data = _ledger().to_dict()
    del data["format_version"]
    with pytest.raises(ValueError, match="version"):
        PrivacyAccountant.from_dict(data, AccountantKind.RDP)


def test_save_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "privacy.json"
    accountant = _ledger(AccountantKind.PRV)
    accountant.save(path)
    loaded = PrivacyAccountant.load(path, AccountantKind.PRV)
    assert loaded.kind is AccountantKind.PRV
    assert loaded.history == accountant.history
    accountant.record(2.0, 0.05, 3)
    accountant.save(str(path))
    assert PrivacyAccountant.load(path, accountant.kind).history == accountant.history
    assert os.listdir(tmp_path) == ["privacy.json"]


def test_failed_save_keeps_the_old_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "privacy.json"
    old = _ledger()
    old.save(path)
    newer = _ledger()
    newer.record(3.0, 0.5, 100)

    def broken_replace(source: str, target: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        newer.save(path)
    monkeypatch.undo()
    assert PrivacyAccountant.load(path, old.kind).history == old.history
    assert os.listdir(tmp_path) == ["privacy.json"]


def test_load_rejects_a_non_object(tmp_path: Path) -> None:
    path = tmp_path / "privacy.json"
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ValueError):
        PrivacyAccountant.load(path, AccountantKind.RDP)
