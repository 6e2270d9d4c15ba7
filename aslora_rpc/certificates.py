"""The federation's private CA: create it, issue role certificates, read identities back, revoke serials."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aslora_core.atomic_files import write_atomically
from aslora_core.mistakes import FixableError

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
REVOKED_FILE = "revoked.json"
CERT_SUFFIX = ".crt"
KEY_SUFFIX = ".key"
DEFAULT_CA_NAME = "aslora federation CA"
DEFAULT_CA_DAYS = 3650
DEFAULT_CERT_DAYS = 365
DEFAULT_COORDINATOR_SANS = ("localhost", "127.0.0.1")
PRIVATE_KEY_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
CLOCK_SKEW = datetime.timedelta(minutes=5)
"""Certificates become valid this long before they are issued, so a slightly slow clock accepts them."""
CA_PATH_LENGTH = 0
"""The CA signs end-entity certificates only, never another CA."""
CURVE = ec.SECP256R1()
"""EC P-256: supported by every TLS stack gRPC uses (BoringSSL, OpenSSL)."""
MAX_CN_LENGTH = 64
NAME_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_CN_LENGTH - 1}}}")
"""A certificate name is also a file name: letters, digits, '.', '_', '-'; at most 64 (the CN limit)."""
REVOKED_KEY = "revoked"


class CertificateError(FixableError, ValueError):
    """A request the CA refuses, or TLS files that do not fit together: a bad name, days or SAN, a missing
    CA, a file that already exists, a key of another certificate, a certificate of another CA or name."""

    fix = (
        "issue the files again from the federation's CA (`aslora certs issue`, docs/operations.md) and "
        "name them in the [tls] table or the connection options"
    )


class Role(StrEnum):
    """What a certificate may do, written as the subject's organizational unit (OU)."""

    COORDINATOR = "coordinator"
    SILO = "silo"
    OPERATOR = "operator"


class Identity(NamedTuple):
    """Who a certificate names: its role (subject OU) and its name (subject CN)."""

    role: Role
    name: str


@dataclass(frozen=True)
class IssuedFiles:
    """The files `issue_certificate` wrote: certificate, private key, and the CA certificate beside them."""

    cert: Path
    key: Path
    ca_cert: Path


@dataclass(frozen=True)
class CaFiles:
    """The files `create_ca` wrote: the CA certificate, its private key and its (empty) deny list."""

    cert: Path
    key: Path
    revoked: Path


def check_name(name: str) -> str:
    """Return `name` if it is usable as a subject CN and a file name, else raise CertificateError."""
    if NAME_PATTERN.fullmatch(name) is None:
        raise CertificateError(
            f"invalid name {name!r}: use 1-{MAX_CN_LENGTH} letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return name


def parse_san(text: str) -> x509.GeneralName:
    """A subject alternative name: an IP address when `text` parses as one, otherwise a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.split(".")
    if not text or any(not label or not re.fullmatch(r"[A-Za-z0-9*-]+", label) for label in labels):
        raise CertificateError(f"invalid SAN {text!r}: not an IP address or a DNS name")
    return x509.DNSName(text)


def create_ca(out_dir: Path, name: str = DEFAULT_CA_NAME, days: int = DEFAULT_CA_DAYS) -> CaFiles:
    """Create a CA key, self-signed certificate and empty deny list in `out_dir`; refuse to overwrite any."""
    _check_days(days)
    if not 0 < len(name) <= MAX_CN_LENGTH:
        raise CertificateError(f"the CA name must be 1-{MAX_CN_LENGTH} characters")
    files = CaFiles(cert=out_dir / CA_CERT_FILE, key=out_dir / CA_KEY_FILE, revoked=out_dir / REVOKED_FILE)
    _refuse_existing(files.cert, files.key, files.revoked)
    key = ec.generate_private_key(CURVE)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        _validity(x509.CertificateBuilder(), days)
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=CA_PATH_LENGTH), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
    )
    certificate = builder.sign(key, hashes.SHA256())
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_private_key(files.key, key)
    _write_new(files.cert, certificate.public_bytes(serialization.Encoding.PEM), PUBLIC_FILE_MODE)
    _write_revoked(files.revoked, ())
    return files


def issue_certificate(
    ca_dir: Path,
    out_dir: Path,
    role: Role,
    name: str,
    *,
    sans: Sequence[str] = (),
    days: int = DEFAULT_CERT_DAYS,
    valid_from: datetime.datetime | None = None,
) -> IssuedFiles:
    """Issue a key and a CA-signed certificate for `role` and `name` into `out_dir`, plus a copy of ca.crt;
    it is valid for `days` from `valid_from` (default: now)."""
    check_name(name)
    _check_days(days)
    if sans and role is not Role.COORDINATOR:
        raise CertificateError("only coordinator certificates carry SANs (silos and operators are clients)")
    ca_cert, ca_key = _load_ca(ca_dir)
    files = IssuedFiles(
        cert=out_dir / f"{name}{CERT_SUFFIX}",
        key=out_dir / f"{name}{KEY_SUFFIX}",
        ca_cert=out_dir / CA_CERT_FILE,
    )
    if files.cert.name == CA_CERT_FILE or files.key.name == CA_KEY_FILE:
        raise CertificateError(f"the name {name!r} would overwrite the CA's own files")
    _refuse_existing(files.cert, files.key)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    if files.ca_cert.exists() and files.ca_cert.read_bytes() != ca_pem:
        raise CertificateError(f"{files.ca_cert} exists and is another CA's certificate")
    key = ec.generate_private_key(CURVE)
    builder = (
        _validity(x509.CertificateBuilder(), days, valid_from)
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([_extended_usage(role)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if role is Role.COORDINATOR:
        names = [parse_san(san) for san in (sans or DEFAULT_COORDINATOR_SANS)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = builder.sign(ca_key, hashes.SHA256())
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_private_key(files.key, key)
    _write_new(files.cert, certificate.public_bytes(serialization.Encoding.PEM), PUBLIC_FILE_MODE)
    if not files.ca_cert.exists():
        _write_new(files.ca_cert, ca_pem, PUBLIC_FILE_MODE)
    return files


def load_certificate(pem: bytes) -> x509.Certificate:
    """Parse one PEM certificate, raising CertificateError when it is not one."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as error:
        raise CertificateError(f"not a PEM certificate: {error}") from error


def load_identity(cert: x509.Certificate | bytes) -> Identity:
    """The (role, name) a certificate's subject states, from its single OU and CN; CertificateError if not."""
    certificate = load_certificate(cert) if isinstance(cert, bytes) else cert
    role_text = _single_attribute(certificate.subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)")
    try:
        role = Role(role_text)
    except ValueError as error:
        raise CertificateError(f"unknown role {role_text!r} in the certificate subject") from error
    return Identity(role=role, name=_single_attribute(certificate.subject, NameOID.COMMON_NAME, "CN (name)"))


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    """The SHA-256 fingerprint of `certificate` (of its DER encoding), 64 lower-case hex digits: what a
    silo pins for each peer under secure aggregation."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    """Raise CertificateError unless `cert` names `ca_cert` as its issuer and carries its valid signature."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as error:
        raise CertificateError(
            f"the certificate was not issued by {ca_cert.subject.rfc4514_string()}"
        ) from error


def revoke(ca_dir: Path, cert_file: Path) -> int:
    """Add the serial of `cert_file`, issued by the CA in `ca_dir`, to its deny list; return the serial."""
    ca_cert = load_certificate((ca_dir / CA_CERT_FILE).read_bytes())
    certificate = load_certificate(cert_file.read_bytes())
    verify_issued_by(certificate, ca_cert)
    serials = read_revoked(ca_dir)
    if certificate.serial_number not in serials:
        _write_revoked(ca_dir / REVOKED_FILE, serials | {certificate.serial_number})
    return certificate.serial_number


def read_revoked(ca_dir: Path) -> frozenset[int]:
    """The revoked serial numbers in the CA's deny list (`revoked.json`); empty when there is none."""
    return read_deny_list(ca_dir / REVOKED_FILE)


def read_deny_list(path: Path) -> frozenset[int]:
    """The serial numbers in a deny list file written by `aslora certs revoke`; empty when it is absent."""
    if not path.exists():
        return frozenset()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return frozenset(int(serial, 16) for serial in document[REVOKED_KEY])
    except (ValueError, KeyError, TypeError) as error:
        raise CertificateError(f"{path} is not a deny list written by `aslora certs revoke`") from error


def _write_revoked(path: Path, serials: Iterable[int]) -> None:
    """Write the deny list atomically, so a reader never sees half of it."""
    document = {REVOKED_KEY: [format(serial, "x") for serial in sorted(serials)]}
    write_atomically(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ca_dir / CA_CERT_FILE, ca_dir / CA_KEY_FILE
    if not cert_path.is_file() or not key_path.is_file():
        raise CertificateError(
            f"no CA in {ca_dir}: expected {CA_CERT_FILE} and {CA_KEY_FILE} (aslora certs init)"
        )
    certificate = load_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{key_path} is not an EC private key")
    return certificate, key


def _single_attribute(name: x509.Name, oid: x509.ObjectIdentifier, label: str) -> str:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1 or not isinstance(values[0].value, str):
        raise CertificateError(f"the certificate subject needs exactly one {label}")
    return values[0].value


def _extended_usage(role: Role) -> x509.ObjectIdentifier:
    return ExtendedKeyUsageOID.SERVER_AUTH if role is Role.COORDINATOR else ExtendedKeyUsageOID.CLIENT_AUTH


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _validity(
    builder: x509.CertificateBuilder, days: int, valid_from: datetime.datetime | None = None
) -> x509.CertificateBuilder:
    start = valid_from or datetime.datetime.now(datetime.UTC)
    return (
        builder.serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + datetime.timedelta(days=days))
    )


def _check_days(days: int) -> None:
    if days < 1:
        raise CertificateError(f"days must be at least 1, not {days}")


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise CertificateError(f"{path} already exists; remove it first (nothing was overwritten)")


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new(path, pem, PRIVATE_KEY_MODE)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start (O_EXCL: never an existing file), then write `data`."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
