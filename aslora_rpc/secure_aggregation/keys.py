"""A silo's X25519 key pairs for one round: one agrees pairwise mask keys, the other share-encryption keys."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from aslora_rpc.secure_aggregation.errors import KeySubstitutionError

X25519_KEY_BYTES = 32


@dataclass(frozen=True)
class PublicKeys:
    """A silo's two public keys of a round, raw 32-byte X25519 encodings."""

    mask: bytes
    share: bytes

    def __post_init__(self) -> None:
        if len(self.mask) != X25519_KEY_BYTES or len(self.share) != X25519_KEY_BYTES:
            raise KeySubstitutionError(f"an X25519 public key is {X25519_KEY_BYTES} bytes")


@dataclass(frozen=True)
class RoundKeys:
    """The private halves, made fresh for each round; they never leave the silo (which keeps them only in its
    own journal, to repeat the same round after a coordinator restart)."""

    mask: X25519PrivateKey
    share: X25519PrivateKey

    @classmethod
    def generate(cls) -> RoundKeys:
        """Two new key pairs from the OS CSPRNG."""
        return cls(mask=X25519PrivateKey.generate(), share=X25519PrivateKey.generate())

    @property
    def public(self) -> PublicKeys:
        """The public keys to sign and advertise."""
        return PublicKeys(
            mask=public_bytes(self.mask.public_key()), share=public_bytes(self.share.public_key())
        )


def public_bytes(key: X25519PublicKey) -> bytes:
    """The raw 32-byte encoding of an X25519 public key."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def private_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32-byte encoding of an X25519 private key (what is Shamir-shared)."""
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def agree(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    """The X25519 shared secret of `private` and a peer's raw public key."""
    return private.exchange(X25519PublicKey.from_public_bytes(peer_public))
