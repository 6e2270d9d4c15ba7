"""Shares sent from silo to silo through the coordinator, encrypted so that only the recipient reads them.

The key is HKDF of the two silos' share-key agreement (X25519), bound to the run, the task and the
ordered pair; ChaCha20-Poly1305 authenticates the sender, recipient and round as associated data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aslora_rpc.secure_aggregation.context import RoundContext
from aslora_rpc.secure_aggregation.errors import SecureAggregationError
from aslora_rpc.secure_aggregation.shamir import ELEMENT_BYTES, Share

KEY_LABEL = "aslora/secure-aggregation/v1/share-encryption"
DATA_LABEL = "aslora/secure-aggregation/v1/shares"
KEY_BYTES = 32
NONCE_BYTES = 12
X_BYTES = 4
PLAINTEXT_BYTES = X_BYTES + 2 * ELEMENT_BYTES


@dataclass(frozen=True)
class SharePair:
    """What one silo holds of another's secrets: a share of its self-mask seed and of its mask key."""

    seed: Share
    mask_key: Share

    def __post_init__(self) -> None:
        if self.seed.x != self.mask_key.x:
            raise SecureAggregationError("both shares of a pair belong to the same holder")


@dataclass(frozen=True)
class EncryptedShares:
    """A SharePair from `sender` for `recipient`, sealed; the coordinator relays it unread."""

    sender: str
    recipient: str
    nonce: bytes
    ciphertext: bytes


def _cipher(context: RoundContext, shared_secret: bytes, sender: str, recipient: str) -> ChaCha20Poly1305:
    low, high = sorted((sender, recipient))
    info = context.binding(KEY_LABEL, low, high)
    key = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared_secret)
    return ChaCha20Poly1305(key)


def encrypt_shares(
    context: RoundContext, shared_secret: bytes, sender: str, recipient: str, pair: SharePair
) -> EncryptedShares:
    """Seal `pair` for `recipient` under the pair's share key (a fresh random nonce)."""
    plaintext = (
        pair.seed.x.to_bytes(X_BYTES, "big")
        + pair.seed.y.to_bytes(ELEMENT_BYTES, "big")
        + pair.mask_key.y.to_bytes(ELEMENT_BYTES, "big")
    )
    nonce = os.urandom(NONCE_BYTES)
    data = context.binding(DATA_LABEL, sender, recipient)
    ciphertext = _cipher(context, shared_secret, sender, recipient).encrypt(nonce, plaintext, data)
    return EncryptedShares(sender=sender, recipient=recipient, nonce=nonce, ciphertext=ciphertext)


def decrypt_shares(context: RoundContext, shared_secret: bytes, sealed: EncryptedShares) -> SharePair:
    """Open shares sealed for this silo; SecureAggregationError if they were altered or are for another
    round, sender or recipient."""
    data = context.binding(DATA_LABEL, sealed.sender, sealed.recipient)
    try:
        plaintext = _cipher(context, shared_secret, sealed.sender, sealed.recipient).decrypt(
            sealed.nonce, sealed.ciphertext, data
        )
    except (InvalidTag, ValueError):
        raise SecureAggregationError(f"the shares from {sealed.sender!r} do not authenticate") from None
    if len(plaintext) != PLAINTEXT_BYTES:
        raise SecureAggregationError(f"the shares from {sealed.sender!r} are {len(plaintext)} bytes")
    x = int.from_bytes(plaintext[:X_BYTES], "big")
    seed_y = int.from_bytes(plaintext[X_BYTES : X_BYTES + ELEMENT_BYTES], "big")
    key_y = int.from_bytes(plaintext[X_BYTES + ELEMENT_BYTES :], "big")
    return SharePair(seed=Share(x, seed_y), mask_key=Share(x, key_y))
