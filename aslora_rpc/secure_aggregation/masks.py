"""Masks in the ring Z_{2^64}: ChaCha20 keystreams keyed by HKDF of a shared secret or of a self-mask seed.

A pair of silos u < v (by name) derive the same key from their X25519 shared secret; u adds the
keystream and v subtracts it, so the pair's masks cancel in the sum. Each key is used for one keystream
only (it is bound to the run, the task and the pair), so ChaCha20's nonce can be fixed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aslora_rpc.secure_aggregation.context import RoundContext

RingVector = npt.NDArray[np.uint64]
"""A vector of the ring Z_{2^64}: numpy's uint64 arithmetic wraps modulo 2^64."""
WORD_BYTES = 8
KEY_BYTES = 32
CHACHA_NONCE = bytes(16)
"""ChaCha20's 16-byte counter and nonce, fixed: every key it is used with keys a single keystream."""
PAIRWISE_LABEL = "aslora/secure-aggregation/v1/pairwise-mask"
SELF_LABEL = "aslora/secure-aggregation/v1/self-mask"


def keystream(key: bytes, length: int) -> RingVector:
    """`length` ring elements of the ChaCha20 keystream of `key` (little-endian 64-bit words)."""
    encryptor = Cipher(algorithms.ChaCha20(key, CHACHA_NONCE), mode=None).encryptor()
    stream = encryptor.update(bytes(length * WORD_BYTES))
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64, copy=False)


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(secret)


def pairwise_mask(
    context: RoundContext, shared_secret: bytes, own: str, peer: str, length: int
) -> RingVector:
    """The mask `own` adds for the pair (own, peer): +keystream if own < peer, -keystream otherwise."""
    low, high = sorted((own, peer))
    stream = keystream(_derive(shared_secret, context.binding(PAIRWISE_LABEL, low, high)), length)
    return stream if own == low else np.negative(stream)


def self_mask(context: RoundContext, seed: bytes, silo: str, length: int) -> RingVector:
    """The self mask of `silo` from its round seed."""
    return keystream(_derive(seed, context.binding(SELF_LABEL, silo)), length)
