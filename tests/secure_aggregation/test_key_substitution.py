"""A coordinator that substitutes a silo's public keys is refused by the honest silos, which log why."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from aslora_rpc.certificates import Role, issue_certificate
from aslora_rpc.secure_aggregation.context import RoundContext
from aslora_rpc.secure_aggregation.errors import KeySubstitutionError
from aslora_rpc.secure_aggregation.keys import RoundKeys
from aslora_rpc.secure_aggregation.signatures import KeyAdvertisement, sign_keys
from tests.secure_aggregation.federation import IMPOSTOR, RUN_ID, SILOS, Pki, Round, make_pki, start_round

VICTIM = "silo-b"
HONEST = "silo-a"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates made once for the module."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def _signed_by(cert: Path, key: Path, context: RoundContext, name: str) -> KeyAdvertisement:
    """Fresh keys signed with the certificate and key files given, for `name`."""
    return sign_keys(context, name, RoundKeys.generate().public, cert.read_bytes(), key.read_bytes())


def _with_victim_replaced(round_: Round, forged: KeyAdvertisement) -> list[KeyAdvertisement]:
    return [forged if p.silo == VICTIM else p.advertisement for p in round_.participants.values()]


def _refused(
    round_: Round, advertisements: list[KeyAdvertisement], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The honest silo refuses to share keys, and its log says why."""
    with caplog.at_level(logging.WARNING), pytest.raises(KeySubstitutionError, match=reason):
        round_.participants[HONEST].share_keys(advertisements)
    assert any("refused" in r.getMessage() and reason in r.getMessage() for r in caplog.records)


def test_keys_signed_by_another_silo_certificate_of_the_ca_are_refused(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The impostor's CA-signed certificate signs keys presented as the victim's."""
    round_ = start_round(pki, tmp_path)
    own = _signed_by(pki.impostor.cert, pki.impostor.key, round_.context, IMPOSTOR)
    forged = dataclasses.replace(own, silo=VICTIM)
    _refused(
        round_,
        _with_victim_replaced(round_, forged),
        f"signed by the certificate of silo '{IMPOSTOR}'",
        caplog,
    )


def test_a_certificate_minted_under_the_victims_name_is_refused(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's CA issues a second certificate named like the victim: the CA accepts it, the pinned
    fingerprint does not."""
    round_ = start_round(pki, tmp_path)
    minted = issue_certificate(pki.local.ca_dir, tmp_path / "minted", Role.SILO, VICTIM, days=1)
    forged = _signed_by(minted.cert, minted.key, round_.context, VICTIM)
    _refused(round_, _with_victim_replaced(round_, forged), "not the one pinned", caplog)


def test_keys_altered_after_signing_are_refused(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The victim's own certificate and signature, with other keys: the signature does not verify."""
    round_ = start_round(pki, tmp_path)
    genuine = round_.participants[VICTIM].advertisement
    forged = dataclasses.replace(genuine, keys=RoundKeys.generate().public)
    _refused(round_, _with_victim_replaced(round_, forged), "does not verify", caplog)


def test_keys_signed_for_another_task_are_refused(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The victim's genuine keys of an earlier task, replayed: bound to that task, they do not verify."""
    round_ = start_round(pki, tmp_path)
    earlier = RoundContext.with_majority(RUN_ID, "task-6", SILOS)
    victim = pki.local.silos[VICTIM]
    replayed = _signed_by(victim.cert, victim.key, earlier, VICTIM)
    _refused(round_, _with_victim_replaced(round_, replayed), "does not verify", caplog)


def test_an_extra_silo_and_a_replaced_own_key_are_refused(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys of a silo outside the round, or the honest silo's own keys swapped, are refused too."""
    round_ = start_round(pki, tmp_path)
    genuine = [p.advertisement for p in round_.participants.values()]
    extra = _signed_by(pki.impostor.cert, pki.impostor.key, round_.context, IMPOSTOR)
    _refused(round_, [*genuine, extra], "not one of this round's silos", caplog)
    own = round_.participants[HONEST].advertisement
    swapped = [
        dataclasses.replace(own, keys=round_.participants[VICTIM].advertisement.keys) if a is own else a
        for a in genuine
    ]
    _refused(round_, swapped, "does not verify", caplog)


def test_genuine_keys_are_accepted(pki: Pki, tmp_path: Path) -> None:
    """The same silo shares keys when every advertisement is genuine: one sealed set per other silo."""
    round_ = start_round(pki, tmp_path)
    sealed = round_.participants[HONEST].share_keys([p.advertisement for p in round_.participants.values()])
    assert sorted(item.recipient for item in sealed) == [s for s in SILOS if s != HONEST]
