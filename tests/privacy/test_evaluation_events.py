"""Evaluation releases in a privacy ledger: their own event kind, composed with DP-SGD steps, readable
beside the ledgers written before the kind existed."""

from __future__ import annotations

import json

import pytest

from aslora_core.config import AccountantKind
from aslora_core.privacy import FULL_BATCH, Mechanism, PrivacyAccountant, PrivacyEvent, epsilon_spent

DELTA = 1e-5
TRAINING_SIGMA = 1.1
EVALUATION_SIGMA = 20.0


def _mixed() -> PrivacyAccountant:
    accountant = PrivacyAccountant()
    accountant.record(TRAINING_SIGMA, 0.02, 10)
    accountant.record_evaluation(EVALUATION_SIGMA)
    accountant.record(TRAINING_SIGMA, 0.02, 10)
    accountant.record_evaluation(EVALUATION_SIGMA)
    return accountant


def test_an_evaluation_release_is_a_full_batch_event_of_its_own_kind() -> None:
    history = _mixed().history
    assert [event.mechanism for event in history] == [
        Mechanism.DP_SGD,
        Mechanism.EVALUATION,
        Mechanism.DP_SGD,
        Mechanism.EVALUATION,
    ]
    assert history[1] == PrivacyEvent(EVALUATION_SIGMA, FULL_BATCH, 1, Mechanism.EVALUATION)


def test_consecutive_releases_merge_but_never_with_training_steps() -> None:
    accountant = PrivacyAccountant()
    accountant.record(EVALUATION_SIGMA, FULL_BATCH, 1)
    accountant.record_evaluation(EVALUATION_SIGMA)
    accountant.record_evaluation(EVALUATION_SIGMA)
    assert accountant.history == (
        PrivacyEvent(EVALUATION_SIGMA, FULL_BATCH, 1),
        PrivacyEvent(EVALUATION_SIGMA, FULL_BATCH, 2, Mechanism.EVALUATION),
    )


def test_an_evaluation_event_must_read_every_record() -> None:
    with pytest.raises(ValueError, match="q = 1"):
        PrivacyEvent(EVALUATION_SIGMA, 0.5, 1, Mechanism.EVALUATION)


@pytest.mark.parametrize("kind", list(AccountantKind))
def test_the_total_composes_training_and_evaluation(kind: AccountantKind) -> None:
    accountant = _mixed()
    accountant.kind = kind
    as_plain_gaussians = [
        PrivacyEvent(TRAINING_SIGMA, 0.02, 10),
        PrivacyEvent(EVALUATION_SIGMA, FULL_BATCH, 1),
        PrivacyEvent(TRAINING_SIGMA, 0.02, 10),
        PrivacyEvent(EVALUATION_SIGMA, FULL_BATCH, 1),
    ]
    training_only = epsilon_spent([PrivacyEvent(TRAINING_SIGMA, 0.02, 20)], DELTA, kind)
    total = accountant.epsilon(DELTA)
    assert total == epsilon_spent(as_plain_gaussians, DELTA, kind)
    assert total > training_only


def test_the_kind_survives_a_round_trip_and_older_ledgers_read_as_training() -> None:
    data = json.loads(json.dumps(_mixed().to_dict()))
    assert [item.get("mechanism") for item in data["events"]] == [None, "evaluation", None, "evaluation"]
    assert PrivacyAccountant.from_dict(data, AccountantKind.RDP).history == _mixed().history
    version_2 = {"format_version": 2, "events": [{"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 4}]}
    read = PrivacyAccountant.from_dict(version_2, AccountantKind.RDP)
    assert read.history == (PrivacyEvent(1.0, 0.01, 4, Mechanism.DP_SGD),)


def test_an_unknown_mechanism_is_refused() -> None:
    data = _mixed().to_dict()
    data["events"][1]["mechanism"] = "laplace"
    with pytest.raises(ValueError):
        PrivacyAccountant.from_dict(data, AccountantKind.RDP)
