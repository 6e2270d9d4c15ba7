"""A silo's round keys signed with its certificate's key, and their check against the CA and pinned peers.

The operator holds the CA and could mint a certificate for any name, so a CA signature alone does not
stop a coordinator from inventing silos or substituting keys: each silo also pins its peers' names and
certificate fingerprints in its own config, and accepts a peer's keys only from the pinned certificate.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aslora_rpc.certificates import (
    CertificateError,
    Role,
    certificate_fingerprint,
    check_name,
    load_identity,
    verify_issued_by,
)
from aslora_rpc.secure_aggregation.context import RoundContext
from aslora_rpc.secure_aggregation.errors import KeySubstitutionError, SecureAggregationError
from aslora_rpc.secure_aggregation.keys import PublicKeys
from aslora_rpc.tls import check_key_matches

SIGNATURE_LABEL = "aslora/secure-aggregation/v1/round-keys"
FINGERPRINT_PATTERN = re.compile(r"[0-9a-f]{64}")
"""A certificate's SHA-256 fingerprint: 64 lower-case hex digits of its DER encoding's digest."""


@dataclass(frozen=True)
class PinnedPeers:
    """The silos a silo accepts round keys from: name -> the SHA-256 fingerprint of its certificate."""

    fingerprints: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, fingerprint in self.fingerprints.items():
            try:
                check_name(name)
            except CertificateError as error:
                raise SecureAggregationError(f"pinned peer: {error}") from None
            if FINGERPRINT_PATTERN.fullmatch(fingerprint) is None:
                raise SecureAggregationError(
                    f"pinned peer {name!r}: the fingerprint must be 64 lower-case hex digits (SHA-256)"
                )


@dataclass(frozen=True)
class PeerTrust:
    """What a silo checks peers' keys against: the federation CA and its own pinned peers."""

    ca_certificate: x509.Certificate
    pinned: PinnedPeers


@dataclass(frozen=True)
class KeyAdvertisement:
    """A silo's signed public keys for one round, with the certificate that signed them (PEM)."""

    silo: str
    keys: PublicKeys
    certificate_pem: bytes
    signature: bytes


def signed_payload(context: RoundContext, silo: str, keys: PublicKeys) -> bytes:
    """What a silo signs: its keys bound to the run id, the task id and its name."""
    return context.binding(SIGNATURE_LABEL, silo, keys.mask, keys.share)


def sign_keys(
    context: RoundContext, silo: str, keys: PublicKeys, certificate_pem: bytes, private_key_pem: bytes
) -> KeyAdvertisement:
    """Sign `keys` with the silo's certificate key (ECDSA P-256, SHA-256); the key must match the
    certificate, and the certificate must be a silo certificate for `silo`."""
    check_key_matches(certificate_pem, private_key_pem)
    identity = load_identity(certificate_pem)
    if identity.role is not Role.SILO or identity.name != silo:
        raise SecureAggregationError(
            f"the certificate is {identity.role.value} {identity.name!r}, not silo {silo!r}"
        )
    private_key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise SecureAggregationError("a silo's certificate key must be an EC key (aslora certs issue)")
    signature = private_key.sign(signed_payload(context, silo, keys), ec.ECDSA(hashes.SHA256()))
    return KeyAdvertisement(silo=silo, keys=keys, certificate_pem=certificate_pem, signature=signature)


def verify_advertisement(
    advertisement: KeyAdvertisement,
    context: RoundContext,
    trust: PeerTrust,
    now: datetime.datetime | None = None,
) -> None:
    """Raise KeySubstitutionError unless the advertisement is for a silo of this round, signed for this
    run and task by a current silo certificate that the CA issued under that name and whose fingerprint
    is the one pinned for it."""
    silo = advertisement.silo
    if silo not in context.silos:
        raise KeySubstitutionError(f"keys for {silo!r}, which is not one of this round's silos")
    pinned = trust.pinned.fingerprints.get(silo)
    if pinned is None:
        raise KeySubstitutionError(f"{silo!r} is not among this silo's pinned peers")
    try:
        certificate = x509.load_pem_x509_certificate(advertisement.certificate_pem)
        verify_issued_by(certificate, trust.ca_certificate)
        identity = load_identity(certificate)
    except (ValueError, CertificateError) as error:
        raise KeySubstitutionError(f"the certificate of {silo!r}'s keys: {error}") from None
    if identity.role is not Role.SILO or identity.name != silo:
        raise KeySubstitutionError(
            f"keys for {silo!r} signed by the certificate of {identity.role.value} {identity.name!r}"
        )
    if certificate_fingerprint(certificate) != pinned:
        raise KeySubstitutionError(f"the certificate of {silo!r}'s keys is not the one pinned for it")
    moment = now or datetime.datetime.now(datetime.UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        raise KeySubstitutionError(f"the certificate of {silo!r} is not valid at {moment.isoformat()}")
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise KeySubstitutionError(f"the certificate of {silo!r} does not hold an EC key")
    try:
        public_key.verify(
            advertisement.signature,
            signed_payload(context, silo, advertisement.keys),
            ec.ECDSA(hashes.SHA256()),
        )
    except InvalidSignature:
        raise KeySubstitutionError(
            f"the signature on {silo!r}'s keys does not verify for this run and task"
        ) from None
