"""`aslora certs`: CA and role certificates on disk, read back, revoked, and used in a real mTLS handshake."""

from __future__ import annotations

import hashlib
import ipaddress
import stat
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from typer.testing import CliRunner

from aslora_cli.main import app
from aslora_rpc.certificates import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    REVOKED_FILE,
    CertificateError,
    IssuedFiles,
    Role,
    create_ca,
    issue_certificate,
    load_certificate,
    load_identity,
    read_revoked,
    revoke,
    verify_issued_by,
)
from aslora_rpc.tls import ReloadingServerCredentials, TlsFiles, channel_credentials

NETWORK_TIMEOUT_SECONDS = 30
CALL_TIMEOUT_SECONDS = 5.0
SERVER_WORKERS = 2
LOOPBACK = "127.0.0.1"
PRIVATE_MODE = 0o600
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"
IpAddressOrNetwork = (
    ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network | ipaddress.IPv6Network
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _tls(files: IssuedFiles) -> TlsFiles:
    return TlsFiles(ca_cert=files.ca_cert, cert=files.cert, key=files.key)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    """A fresh CA in its own folder."""
    folder = tmp_path / "ca"
    create_ca(folder)
    return folder


def test_init_writes_a_ca_with_a_private_key(ca_dir: Path) -> None:
    assert _mode(ca_dir / CA_KEY_FILE) == PRIVATE_MODE
    ca_cert = load_certificate((ca_dir / CA_CERT_FILE).read_bytes())
    constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    usage = ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert constraints.ca
    assert usage.key_cert_sign
    assert usage.crl_sign
    verify_issued_by(ca_cert, ca_cert)
    with pytest.raises(CertificateError, match="already exists"):
        create_ca(ca_dir)


def test_init_never_overwrites_a_deny_list(ca_dir: Path) -> None:
    (ca_dir / CA_CERT_FILE).unlink()
    (ca_dir / CA_KEY_FILE).unlink()
    with pytest.raises(CertificateError, match=f"{REVOKED_FILE} already exists"):
        create_ca(ca_dir)
    assert not (ca_dir / CA_CERT_FILE).exists()


def test_issued_certificates_chain_to_the_ca_and_name_their_role(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ca_cert = load_certificate((ca_dir / CA_CERT_FILE).read_bytes())
    for role, name in [
        (Role.COORDINATOR, "coordinator"),
        (Role.SILO, "hospital-a"),
        (Role.OPERATOR, "alice"),
    ]:
        files = issue_certificate(ca_dir, out, role, name)
        assert files.cert == out / f"{name}.crt"
        assert files.key == out / f"{name}.key"
        assert _mode(files.key) == PRIVATE_MODE
        assert files.ca_cert.read_bytes() == (ca_dir / CA_CERT_FILE).read_bytes()
        certificate = load_certificate(files.cert.read_bytes())
        verify_issued_by(certificate, ca_cert)
        assert load_identity(certificate) == (role, name)
        assert load_identity(files.cert.read_bytes()) == (role, name)
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        expected = (
            ExtendedKeyUsageOID.SERVER_AUTH if role is Role.COORDINATOR else ExtendedKeyUsageOID.CLIENT_AUTH
        )
        assert list(usage) == [expected]


def test_coordinator_sans_default_and_explicit(ca_dir: Path, tmp_path: Path) -> None:
    default = issue_certificate(ca_dir, tmp_path, Role.COORDINATOR, "default")
    explicit = issue_certificate(
        ca_dir, tmp_path, Role.COORDINATOR, "explicit", sans=["coordinator.example.org", "10.1.2.3", "::1"]
    )

    def sans(path: Path) -> tuple[list[str], list[IpAddressOrNetwork]]:
        value = load_certificate(path.read_bytes()).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        return value.value.get_values_for_type(x509.DNSName), value.value.get_values_for_type(x509.IPAddress)

    assert sans(default.cert) == (["localhost"], [ipaddress.ip_address("127.0.0.1")])
    assert sans(explicit.cert) == (
        ["coordinator.example.org"],
        [ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("::1")],
    )


def test_refusals(ca_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="invalid name"):
        issue_certificate(ca_dir, tmp_path, Role.SILO, "../escape")
    with pytest.raises(CertificateError, match="only coordinator"):
        issue_certificate(ca_dir, tmp_path, Role.SILO, "silo", sans=["example.org"])
    with pytest.raises(CertificateError, match="invalid SAN"):
        issue_certificate(ca_dir, tmp_path, Role.COORDINATOR, "coordinator", sans=["bad host"])
    with pytest.raises(CertificateError, match="no CA"):
        issue_certificate(tmp_path / "missing", tmp_path, Role.SILO, "silo")
    with pytest.raises(CertificateError, match="days"):
        issue_certificate(ca_dir, tmp_path, Role.SILO, "silo", days=0)
    issue_certificate(ca_dir, tmp_path, Role.SILO, "silo")
    with pytest.raises(CertificateError, match="already exists"):
        issue_certificate(ca_dir, tmp_path, Role.SILO, "silo")


def test_revoke_appends_serials_once(ca_dir: Path, tmp_path: Path) -> None:
    assert read_revoked(ca_dir) == frozenset()
    first = issue_certificate(ca_dir, tmp_path, Role.SILO, "first")
    second = issue_certificate(ca_dir, tmp_path, Role.OPERATOR, "second")
    serial = revoke(ca_dir, first.cert)
    assert serial == load_certificate(first.cert.read_bytes()).serial_number
    assert revoke(ca_dir, first.cert) == serial
    revoke(ca_dir, second.cert)
    assert read_revoked(ca_dir) == {serial, load_certificate(second.cert.read_bytes()).serial_number}


def test_revoke_refuses_another_cas_certificate(ca_dir: Path, tmp_path: Path) -> None:
    other_ca = tmp_path / "other"
    create_ca(other_ca)
    foreign = issue_certificate(other_ca, tmp_path / "foreign", Role.SILO, "foreign")
    with pytest.raises(CertificateError, match="not issued by"):
        revoke(ca_dir, foreign.cert)


def test_cli_init_issue_revoke(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    runner = CliRunner()
    issue = ["certs", "issue", "--ca", str(pki), "--out", str(pki)]
    commands = [
        ["certs", "init", "--out", str(pki), "--name", "test CA", "--days", "30"],
        [*issue, "--role", "coordinator", "--name", "coordinator", "--san", "coordinator.example.org"],
        [*issue, "--role", "silo", "--name", "hospital-a"],
        ["certs", "revoke", "--ca", str(pki), "--cert", str(pki / "hospital-a.crt")],
    ]
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        assert "PRIVATE KEY" not in result.output
    assert {path.name for path in pki.iterdir()} == {
        "ca.crt",
        "ca.key",
        "coordinator.crt",
        "coordinator.key",
        "hospital-a.crt",
        "hospital-a.key",
        "revoked.json",
    }
    assert load_identity((pki / "hospital-a.crt").read_bytes()) == (Role.SILO, "hospital-a")
    refused = runner.invoke(app, commands[2])
    assert refused.exit_code == 1
    assert "already exists" in refused.output


@pytest.fixture
def health_server(ca_dir: Path, tmp_path: Path) -> Iterator[int]:
    """A mutual-TLS server with the coordinator certificate, serving grpc.health.v1; yields its port."""
    coordinator = issue_certificate(ca_dir, tmp_path / "coordinator", Role.COORDINATOR, "coordinator")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=SERVER_WORKERS))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    credentials = ReloadingServerCredentials(_tls(coordinator)).credentials()
    port = server.add_secure_port(f"{LOOPBACK}:0", credentials)
    server.start()
    try:
        yield port
    finally:
        server.stop(0).wait()


def _check(port: int, client: IssuedFiles) -> int:
    """The overall health status, asked over mutual TLS with `client`'s certificate."""
    with grpc.secure_channel(f"{LOOPBACK}:{port}", channel_credentials(_tls(client))) as channel:
        check = channel.unary_unary(
            HEALTH_CHECK_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        response: health_pb2.HealthCheckResponse = check(
            health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_SECONDS
        )
        return response.status


@pytest.mark.timeout(NETWORK_TIMEOUT_SECONDS)
def test_mutual_tls_handshake_with_issued_certificates(
    health_server: int, ca_dir: Path, tmp_path: Path
) -> None:
    silo = issue_certificate(ca_dir, tmp_path / "silo", Role.SILO, "hospital-a")
    assert _check(health_server, silo) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.timeout(NETWORK_TIMEOUT_SECONDS)
def test_client_certificate_from_another_ca_is_refused(
    health_server: int, ca_dir: Path, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca"
    create_ca(other_ca)
    intruder = issue_certificate(other_ca, tmp_path / "intruder", Role.SILO, "hospital-a")
    # The intruder trusts the real CA, so only its own certificate can make the handshake fail.
    trusting = IssuedFiles(cert=intruder.cert, key=intruder.key, ca_cert=ca_dir / CA_CERT_FILE)
    with pytest.raises(grpc.RpcError) as raised:
        _check(health_server, trusting)
    assert isinstance(raised.value, grpc.Call)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


def test_cli_fingerprint_prints_the_sha256_of_the_der_certificate(ca_dir: Path, tmp_path: Path) -> None:
    """`aslora certs fingerprint` prints what a silo pins for a peer: SHA-256 over the DER encoding."""
    issued = issue_certificate(ca_dir, tmp_path / "silo", Role.SILO, "hospital-b")
    result = CliRunner().invoke(app, ["certs", "fingerprint", "--cert", str(issued.cert)])
    assert result.exit_code == 0, result.output
    der = load_certificate(issued.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert result.output.strip() == f"silo hospital-b: sha256 {hashlib.sha256(der).hexdigest()}"
    missing = CliRunner().invoke(app, ["certs", "fingerprint", "--cert", str(tmp_path / "none.crt")])
    assert missing.exit_code == 1
