"""Whether a process's TLS files fit together before it starts: readable, the key is the certificate's,
the certificate is the federation CA's, states the expected role and name, and is valid now."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from aslora_rpc.certificates import (
    CertificateError,
    Role,
    load_certificate,
    load_identity,
    verify_issued_by,
)
from aslora_rpc.tls import TlsFiles, check_key_matches

RENEWAL_WARNING = datetime.timedelta(days=30)
"""A certificate that expires sooner than this is reported as due for renewal."""


@dataclass(frozen=True)
class TlsSummary:
    """What the checked certificate states, and when it stops being valid."""

    role: Role
    name: str
    expires: datetime.datetime
    renew_soon: bool
    """It expires within RENEWAL_WARNING."""


def _read(files: TlsFiles) -> tuple[bytes, bytes, bytes]:
    try:
        return files.read()
    except OSError as error:
        raise CertificateError(f"cannot read the TLS file {error.filename}: {error.strerror}") from error


def check_tls_files(
    files: TlsFiles, role: Role, name: str | None = None, now: datetime.datetime | None = None
) -> TlsSummary:
    """The summary of `files`' certificate; CertificateError naming the first file that does not fit: the
    key is another certificate's, the certificate is not issued by the CA, states another role or (when
    `name` is given) another CN, or is expired or not yet valid at `now` (default: this moment)."""
    ca_pem, cert_pem, key_pem = _read(files)
    ca = load_certificate(ca_pem)
    certificate = load_certificate(cert_pem)
    try:
        check_key_matches(cert_pem, key_pem)
    except CertificateError as error:
        raise CertificateError(f"{files.key} does not fit {files.cert}: {error}") from error
    try:
        verify_issued_by(certificate, ca)
    except CertificateError as error:
        raise CertificateError(f"{files.cert} is not from the CA in {files.ca_cert}: {error}") from error
    identity = load_identity(certificate)
    if identity.role is not role:
        raise CertificateError(f"{files.cert} is a {identity.role.value} certificate, not a {role.value} one")
    if name is not None and identity.name != name:
        raise CertificateError(
            f"{files.cert} names {identity.name!r} (its CN), but this process is {name!r}: the coordinator "
            "knows a silo by its certificate's name"
        )
    moment = now or datetime.datetime.now(datetime.UTC)
    if moment < certificate.not_valid_before_utc:
        raise CertificateError(
            f"{files.cert} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d}"
        )
    if moment >= certificate.not_valid_after_utc:
        raise CertificateError(f"{files.cert} expired on {certificate.not_valid_after_utc:%Y-%m-%d}")
    return TlsSummary(
        role=identity.role,
        name=identity.name,
        expires=certificate.not_valid_after_utc,
        renew_soon=certificate.not_valid_after_utc - moment < RENEWAL_WARNING,
    )
