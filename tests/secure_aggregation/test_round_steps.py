"""The coordinator's steps of a secure round (`coordinator/secure_round.py`) and the silo's journal of its
round (`silo/secure_round_journal.py`), on real keys, shares and masked vectors of four library silos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aslora_coordinator.errors import FederationError
from aslora_coordinator.secure_round import SecureRound, statistics_keys
from aslora_core.config import ClippingMode
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.secure_aggregation.fixed_point import RingCodec, UpdateLayout
from aslora_rpc.secure_aggregation.keys import public_bytes
from aslora_rpc.secure_aggregation.participant import RoundSecrets
from aslora_rpc.secure_aggregation.signatures import KeyAdvertisement
from aslora_silo.secure_round_journal import SecureRoundEntry, SecureRoundJournal
from tests.secure_aggregation.federation import (
    SILOS,
    TASK_ID,
    WEIGHTS,
    Pki,
    Round,
    global_state,
    make_pki,
    selection,
    start_round,
)

STEP_SECONDS = 5.0
OPENED_AT = 100.0
VECTOR_LENGTH = 16


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates made once for the module."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def _secure(round_: Round) -> SecureRound:
    state = global_state()
    return SecureRound(
        context=round_.context,
        layout=UpdateLayout.for_round(state, selection(state)),
        codec=RingCodec(round_weight=sum(WEIGHTS.values())),
        weights=WEIGHTS,
        step_seconds=STEP_SECONDS,
        opened_at=OPENED_AT,
    )


def _advertisement(round_: Round, silo: str) -> KeyAdvertisement:
    return round_.participants[silo].advertisement


def test_the_key_step_closes_when_all_advertised_or_at_its_time(pki: Pki, tmp_path: Path) -> None:
    round_ = start_round(pki, tmp_path)
    secure = _secure(round_)
    for silo in SILOS[:3]:
        secure.offer_keys(_advertisement(round_, silo))
    assert not secure.close_keys(SILOS, OPENED_AT + 1)
    secure.offer_keys(_advertisement(round_, SILOS[0]))  # a re-send of the same keys
    other = _advertisement(start_round(pki, tmp_path / "other"), SILOS[0])
    with pytest.raises(FederationError) as refused:
        secure.offer_keys(other)
    assert refused.value.code is ErrorCode.DUPLICATE_UPDATE
    assert secure.close_keys(SILOS, OPENED_AT + STEP_SECONDS)
    assert [item.silo for item in secure.advertisers or ()] == list(SILOS[:3])
    with pytest.raises(FederationError) as late:
        secure.offer_keys(_advertisement(round_, SILOS[3]))
    assert late.value.code is ErrorCode.ROUND_CLOSED
    assert secure.gone() == {SILOS[3]}


def test_shares_are_relayed_to_their_recipients_and_late_sharers_are_gone(pki: Pki, tmp_path: Path) -> None:
    """All four advertise, three share: each sharer's inbox holds the other two sharers' shares for it."""
    round_ = start_round(pki, tmp_path)
    secure = _secure(round_)
    for silo in SILOS:
        secure.offer_keys(_advertisement(round_, silo))
    assert secure.close_keys(SILOS, OPENED_AT)
    advertisements = list(secure.advertisers or ())
    sealed = {silo: tuple(round_.participants[silo].share_keys(advertisements)) for silo in SILOS[:3]}
    with pytest.raises(FederationError) as foreign:
        secure.offer_shares(SILOS[0], sealed[SILOS[1]])
    assert foreign.value.code is ErrorCode.MALFORMED_MESSAGE
    for silo, items in sealed.items():
        secure.offer_shares(silo, items)
    assert not secure.close_shares(SILOS, OPENED_AT + 1)
    assert secure.close_shares(SILOS, OPENED_AT + STEP_SECONDS)
    assert secure.sharers == frozenset(SILOS[:3])
    inbox = secure.inbox(SILOS[0])
    assert sorted(item.sender for item in inbox) == list(SILOS[1:3])
    assert all(item.recipient == SILOS[0] for item in inbox)
    assert secure.gone() == {SILOS[3]}
    vector = np.arange(VECTOR_LENGTH, dtype=np.uint64)
    with pytest.raises(FederationError) as not_a_sharer:
        secure.accept_masked(SILOS[3], vector, b"x" * 32)
    assert not_a_sharer.value.code is ErrorCode.NOT_ASSIGNED
    secure.accept_masked(SILOS[0], vector, b"a" * 32)
    assert secure.resent(SILOS[0], b"a" * 32)
    with pytest.raises(FederationError) as other_update:
        secure.resent(SILOS[0], b"b" * 32)
    assert other_update.value.code is ErrorCode.DUPLICATE_UPDATE
    request = secure.open_unmasking(OPENED_AT + 2 * STEP_SECONDS)
    assert request.survivors == frozenset({SILOS[0]}) and request.task_id == TASK_ID
    assert not secure.unmasking_done(OPENED_AT + 2 * STEP_SECONDS)
    assert secure.unmasking_done(OPENED_AT + 3 * STEP_SECONDS)


def test_the_statistics_keys_follow_the_clipping_and_the_steps() -> None:
    """Joint clipping releases both factors' statistics, trained clipping the selected ones; one step none."""
    chosen = {"layer.0": FactorChoice.B, "layer.1": FactorChoice.A}
    assert statistics_keys(chosen, ClippingMode.TRAINED, 3) == (("layer.0", Factor.B), ("layer.1", Factor.A))
    assert len(statistics_keys(chosen, ClippingMode.JOINT, 3)) == 4
    assert statistics_keys(chosen, ClippingMode.JOINT, 1) == ()


def test_the_silo_journal_keeps_its_secrets_and_its_masked_update(tmp_path: Path) -> None:
    """Secrets come back as the same keys; the masked update is kept whole with whom it was masked against,
    and a new task drops it."""
    journal = SecureRoundJournal(tmp_path)
    secrets = RoundSecrets.generate()
    entry = SecureRoundEntry.new("run", TASK_ID, secrets)
    journal.begin(entry)
    kept = journal.entry_for("run", TASK_ID)
    assert kept is not None and journal.entry_for("run", "another-task") is None
    assert public_bytes(kept.secrets.keys.mask.public_key()) == public_bytes(secrets.keys.mask.public_key())
    assert kept.secrets.seed == secrets.seed
    assert journal.masked_update(kept) is None
    peers = {SILOS[1]: secrets.keys.public, SILOS[0]: secrets.keys.public}
    sent = journal.keep_masked(kept, peers, b"\x01" * 64)
    masked = journal.entry_for("run", TASK_ID)
    assert masked is not None and masked.peer_keys() == peers
    again = journal.masked_update(masked)
    assert again is not None and again.info == sent.info
    journal.masked_path.write_bytes(b"\x02" * 64)
    assert journal.masked_update(masked) is None
    journal.begin(SecureRoundEntry.new("run", "next-task", RoundSecrets.generate()))
    assert not journal.masked_path.exists()
