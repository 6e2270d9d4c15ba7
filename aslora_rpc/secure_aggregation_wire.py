"""The protobuf forms of the secure-aggregation messages: the round's plan, keys, sealed shares, the
unmasking request and a silo's released shares, and the masked update's bytes (one function each way)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from aslora.v1 import federation_pb2 as pb
from aslora_core.factor_choice import Factor
from aslora_rpc.enum_wire import WireError
from aslora_rpc.messages import SecureAggregationPlan
from aslora_rpc.secure_aggregation.errors import SecureAggregationError
from aslora_rpc.secure_aggregation.keys import PublicKeys
from aslora_rpc.secure_aggregation.masks import WORD_BYTES, RingVector
from aslora_rpc.secure_aggregation.messages import ShareRelease, UnmaskRequest
from aslora_rpc.secure_aggregation.shamir import ELEMENT_BYTES, Share
from aslora_rpc.secure_aggregation.share_encryption import EncryptedShares
from aslora_rpc.secure_aggregation.signatures import KeyAdvertisement

RING_BYTE_ORDER = "<u8"
"""A masked update travels as its ring elements, 64-bit little-endian."""


def plan_to_proto(plan: SecureAggregationPlan) -> pb.SecureAggregationPlan:
    """The SecureAggregationPlan message of `plan`."""
    return pb.SecureAggregationPlan(
        silos=list(plan.silos),
        threshold=plan.threshold,
        fraction_bits=plan.fraction_bits,
        round_weight=plan.round_weight,
        weight=plan.weight,
        statistics=[pb.StatisticsKey(layer=layer, factor=factor.value) for layer, factor in plan.statistics],
    )


def plan_from_proto(message: pb.SecureAggregationPlan) -> SecureAggregationPlan:
    """The plan a SecureAggregationPlan message carries; WireError for an unknown factor."""
    statistics: list[tuple[str, Factor]] = []
    for key in message.statistics:
        try:
            statistics.append((key.layer, Factor(key.factor)))
        except ValueError:
            raise WireError(
                f"unknown factor {key.factor!r} in the statistics of layer {key.layer!r}"
            ) from None
    return SecureAggregationPlan(
        silos=tuple(message.silos),
        threshold=message.threshold,
        fraction_bits=message.fraction_bits,
        round_weight=message.round_weight,
        weight=message.weight,
        statistics=tuple(statistics),
    )


def advertisement_to_proto(advertisement: KeyAdvertisement) -> pb.RoundKeyAdvertisement:
    """The RoundKeyAdvertisement message of a silo's signed keys."""
    return pb.RoundKeyAdvertisement(
        silo=advertisement.silo,
        mask_key=advertisement.keys.mask,
        share_key=advertisement.keys.share,
        certificate_pem=advertisement.certificate_pem,
        signature=advertisement.signature,
    )


def advertisement_from_proto(message: pb.RoundKeyAdvertisement) -> KeyAdvertisement:
    """The signed keys a RoundKeyAdvertisement carries; WireError for keys of the wrong length."""
    try:
        keys = PublicKeys(mask=message.mask_key, share=message.share_key)
    except SecureAggregationError as error:
        raise WireError(f"the keys of {message.silo!r}: {error}") from None
    return KeyAdvertisement(
        silo=message.silo,
        keys=keys,
        certificate_pem=message.certificate_pem,
        signature=message.signature,
    )


def sealed_to_proto(sealed: EncryptedShares) -> pb.SealedShares:
    """The SealedShares message of shares sealed for one recipient."""
    return pb.SealedShares(
        sender=sealed.sender, recipient=sealed.recipient, nonce=sealed.nonce, ciphertext=sealed.ciphertext
    )


def sealed_from_proto(message: pb.SealedShares) -> EncryptedShares:
    """The sealed shares a SealedShares message carries."""
    return EncryptedShares(
        sender=message.sender, recipient=message.recipient, nonce=message.nonce, ciphertext=message.ciphertext
    )


def unmask_request_to_proto(request: UnmaskRequest | None) -> pb.GetUnmaskRequestResponse:
    """The answer to a silo's poll: the survivors once uploads closed, or not ready (None)."""
    if request is None:
        return pb.GetUnmaskRequestResponse(ready=False)
    return pb.GetUnmaskRequestResponse(ready=True, survivors=sorted(request.survivors))


def unmask_request_from_proto(task_id: str, message: pb.GetUnmaskRequestResponse) -> UnmaskRequest | None:
    """The request a GetUnmaskRequestResponse carries for `task_id`; None while uploads are open."""
    if not message.ready:
        return None
    survivors = frozenset(message.survivors)
    if len(survivors) != len(message.survivors):
        raise WireError("a survivor is named twice")
    return UnmaskRequest(task_id=task_id, survivors=survivors)


def release_to_proto(release: ShareRelease) -> pb.ReleaseSharesRequest:
    """The ReleaseSharesRequest of a silo's released shares (it names the silo and the task)."""
    return pb.ReleaseSharesRequest(
        silo_id=release.silo,
        task_id=release.task_id,
        self_mask=_shares_to_proto(release.self_mask),
        mask_key=_shares_to_proto(release.mask_key),
    )


def release_from_proto(message: pb.ReleaseSharesRequest) -> ShareRelease:
    """The shares a ReleaseSharesRequest carries; WireError for a peer named twice or a share that is not a
    field element."""
    return ShareRelease(
        silo=message.silo_id,
        task_id=message.task_id,
        self_mask=_shares_from_proto(message.self_mask),
        mask_key=_shares_from_proto(message.mask_key),
    )


def _shares_to_proto(shares: Mapping[str, Share]) -> list[pb.PeerShare]:
    return [
        pb.PeerShare(peer=peer, x=share.x, y=share.y.to_bytes(ELEMENT_BYTES, "big"))
        for peer, share in sorted(shares.items())
    ]


def _shares_from_proto(messages: Iterable[pb.PeerShare]) -> dict[str, Share]:
    shares: dict[str, Share] = {}
    for message in messages:
        if message.peer in shares:
            raise WireError(f"two shares for {message.peer!r}")
        if len(message.y) != ELEMENT_BYTES:
            raise WireError(f"a share's y is {ELEMENT_BYTES} bytes, got {len(message.y)}")
        try:
            shares[message.peer] = Share(message.x, int.from_bytes(message.y, "big"))
        except SecureAggregationError as error:
            raise WireError(str(error)) from None
    return shares


def ring_to_bytes(vector: RingVector) -> bytes:
    """A masked update's bytes, as uploaded."""
    return vector.astype(RING_BYTE_ORDER, copy=False).tobytes()


def ring_from_bytes(data: bytes, length: int) -> RingVector:
    """The ring vector of an upload that must hold `length` elements; WireError otherwise."""
    if len(data) != length * WORD_BYTES:
        raise WireError(f"a masked update of {len(data)} bytes, the round's layout holds {length} elements")
    return np.frombuffer(data, dtype=RING_BYTE_ORDER).astype(np.uint64)


def advertisements_from_proto(messages: Sequence[pb.RoundKeyAdvertisement]) -> list[KeyAdvertisement]:
    """Every advertisement of an ExchangeKeysResponse."""
    return [advertisement_from_proto(message) for message in messages]
