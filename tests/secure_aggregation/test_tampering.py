"""Shares the coordinator relays cannot be read, altered or redirected, and tampered releases are caught."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aslora_rpc.secure_aggregation.errors import SecureAggregationError
from aslora_rpc.secure_aggregation.messages import UnmaskRequest
from aslora_rpc.secure_aggregation.shamir import PRIME, Share
from aslora_rpc.secure_aggregation.unmasking import unmask
from tests.secure_aggregation.federation import (
    SILOS,
    TASK_ID,
    Pki,
    make_pki,
    round_setup,
    share_and_relay,
    start_round,
    upload,
)

SENDER = "silo-a"
RECIPIENT = "silo-b"
OTHER = "silo-c"
DROPPED = "silo-d"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates made once for the module."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_altered_or_redirected_shares_are_refused(pki: Pki, tmp_path: Path) -> None:
    """A flipped ciphertext bit, or shares for silo-b handed to silo-c as if addressed to it, do not open."""
    round_ = start_round(pki, tmp_path)
    advertisements = [p.advertisement for p in round_.participants.values()]
    sealed = {s: round_.participants[s].share_keys(advertisements) for s in SILOS}
    for_recipient = next(item for item in sealed[SENDER] if item.recipient == RECIPIENT)
    flipped = dataclasses.replace(
        for_recipient, ciphertext=bytes([for_recipient.ciphertext[0] ^ 1]) + for_recipient.ciphertext[1:]
    )
    with pytest.raises(SecureAggregationError, match="do not authenticate"):
        round_.participants[RECIPIENT].receive_shares([flipped])
    redirected = dataclasses.replace(for_recipient, recipient=OTHER)
    with pytest.raises(SecureAggregationError, match="do not authenticate"):
        round_.participants[OTHER].receive_shares([redirected])


def test_a_tampered_key_share_does_not_rebuild_the_advertised_key(pki: Pki, tmp_path: Path) -> None:
    """With exactly t releases, a mask-key share altered in transit rebuilds another key: the coordinator
    refuses it rather than unmasking to a wrong sum."""
    _, layout, codec, updates = round_setup()
    round_ = start_round(pki, tmp_path)
    share_and_relay(round_)
    upload(round_, layout, codec, updates, dropped={DROPPED})
    request = UnmaskRequest(TASK_ID, frozenset(round_.masked))
    releases = [round_.participants[s].release(request) for s in sorted(round_.masked)]
    assert len(releases) == round_.context.threshold
    share = releases[0].mask_key[DROPPED]
    tampered = dataclasses.replace(releases[0], mask_key={DROPPED: Share(share.x, (share.y + 1) % PRIME)})
    with pytest.raises(SecureAggregationError, match=r"advertised key|32-byte secret"):
        unmask(round_.context, round_.keys_seen(), round_.masked, [tampered, *releases[1:]])
