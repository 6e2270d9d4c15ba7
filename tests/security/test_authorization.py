"""Mutual TLS and roles on a live coordinator: every bad identity refused while a good silo finishes."""

from __future__ import annotations

import datetime
import shutil
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from aslora.v1 import admin_pb2, admin_pb2_grpc, federation_pb2_grpc
from aslora.v1 import federation_pb2 as pb
from aslora_coordinator.service import CoordinatorService
from aslora_core.fingerprint import base_model_fingerprint
from aslora_rpc.certificates import (
    REVOKED_FILE,
    IssuedFiles,
    Role,
    create_ca,
    issue_certificate,
    load_certificate,
    revoke,
)
from aslora_rpc.channels import open_channel
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.errors import error_code_of
from aslora_rpc.local_pki import LocalPki, create_local_pki, tls_files, tls_table
from aslora_rpc.messages import RunEnd, RunState
from aslora_rpc.protocol import PROTOCOL_VERSION
from aslora_silo.agent import SiloAgent
from aslora_silo.config import load_silo_config
from tests.grpc.helpers import (
    coordinator_tables,
    load_config,
    served_run_id,
    silo_privacy_toml,
    write_tsv,
)

CALL_TIMEOUT = 10.0
RUN_TIMEOUT_SECONDS = 120.0
GOOD_SILO = "silo-a"
OTHER_SILO = "silo-b"
REVOKED_SILO = "silo-revoked"
UNLISTED_SILO = "silo-unlisted"
EXPIRED_SILO = "silo-expired"
ROUNDS = 3
TRAIN_RECORDS = 16
EXPIRED_DAYS_AGO = 10
HANDSHAKE_FAILED = grpc.StatusCode.UNAVAILABLE
"""What a client sees when the coordinator's TLS stack rejects its certificate during the handshake."""


@dataclass
class Federation:
    """A TLS coordinator, its PKI, and the good silo's agent running in a thread."""

    service: CoordinatorService
    pki: LocalPki
    extra: dict[str, IssuedFiles]
    agent_result: list[RunEnd | None]
    agent_thread: threading.Thread


def _silo_config(
    path: Path, model: Path, name: str, address: str, *, train: Path, tls: dict[str, str]
) -> Path:
    path.write_text(
        f'model_path = "{model}"\n[silo]\nname = "{name}"\n[coordinator]\naddress = "{address}"\n'
        f'[data]\ntrain_path = "{train}"\n[health]\nlisten = "127.0.0.1:0"\n'
        "[connection]\nwait_seconds = 1\n"
        + silo_privacy_toml()
        + "[tls]\n"
        + "".join(f'{key} = "{value}"\n' for key, value in tls.items())
    )
    return path


@pytest.fixture
def federation(tiny_model_dir: Path, tmp_path: Path) -> Iterator[Federation]:
    """A coordinator with mutual TLS, a deny list and an allow list; the good silo starts right away."""
    pki = create_local_pki(tmp_path / "pki", [GOOD_SILO, OTHER_SILO, REVOKED_SILO, UNLISTED_SILO])
    issued = tmp_path / "pki" / "issued"
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=EXPIRED_DAYS_AGO)
    foreign_ca = tmp_path / "foreign-ca"
    create_ca(foreign_ca)
    extra = {
        "expired": issue_certificate(pki.ca_dir, issued, Role.SILO, EXPIRED_SILO, days=1, valid_from=past),
        "foreign": issue_certificate(foreign_ca, tmp_path / "foreign", Role.SILO, GOOD_SILO),
    }
    tables = coordinator_tables(tiny_model_dir, rounds=ROUNDS, round_deadline_seconds=RUN_TIMEOUT_SECONDS)
    tables["tls"] = tls_table(pki.coordinator)
    tables["security"] = {
        "revocation_list": str(pki.ca_dir / REVOKED_FILE),
        "allowed_silos": [GOOD_SILO, OTHER_SILO, REVOKED_SILO, EXPIRED_SILO],
    }
    service = CoordinatorService(load_config(tmp_path / "c.toml", tables), tmp_path / "work", insecure=False)
    config = _silo_config(
        tmp_path / "silo.toml",
        tiny_model_dir,
        GOOD_SILO,
        str(service.server.endpoint),
        train=write_tsv(tmp_path / "train.tsv", TRAIN_RECORDS),
        tls=tls_table(pki.silos[GOOD_SILO]),
    )
    agent = SiloAgent(load_silo_config(config), tmp_path / "silo-state", insecure=False)
    result: list[RunEnd | None] = []
    thread = threading.Thread(target=lambda: result.append(agent.run(max_runs=1)), daemon=True)
    thread.start()
    try:
        yield Federation(service, pki, extra, result, thread)
    finally:
        thread.join(RUN_TIMEOUT_SECONDS)  # the run is short: let it end before the coordinator goes
        service.shutdown()


def _channel(federation: Federation, files: IssuedFiles) -> grpc.Channel:
    return open_channel(federation.service.server.endpoint, tls_files(files), insecure=False)


def _failure(call: Callable[[], object]) -> tuple[grpc.StatusCode, ErrorCode | None]:
    """The status code and the coordinator's error code of a call that must fail."""
    with pytest.raises(grpc.RpcError) as excinfo:
        call()
    error = excinfo.value
    assert isinstance(error, grpc.Call)
    return error.code(), error_code_of(excinfo.value)


def _register(channel: grpc.Channel, name: str, fingerprint: str) -> object:
    stub = federation_pb2_grpc.FederationStub(channel)
    request = pb.RegisterRequest(
        protocol_version=PROTOCOL_VERSION,
        silo_name=name,
        base_model_fingerprint=fingerprint,
        dataset_size=8,
        run_id=served_run_id(stub),
    )
    return stub.Register(request, timeout=CALL_TIMEOUT)


def _status(channel: grpc.Channel) -> admin_pb2.GetStatusResponse:
    response: admin_pb2.GetStatusResponse = admin_pb2_grpc.AdminStub(channel).GetStatus(
        admin_pb2.GetStatusRequest(), timeout=CALL_TIMEOUT
    )
    return response


def _upload_as(channel: grpc.Channel, claimed: str) -> object:
    header = pb.UploadHeader(silo_id=claimed, task_id="any", epsilon_spent=0.0)
    header.update.size_bytes = 4
    header.update.sha256 = bytes(32)
    messages = iter([pb.UploadUpdateRequest(header=header), pb.UploadUpdateRequest(chunk=b"fake")])
    return federation_pb2_grpc.FederationStub(channel).UploadUpdate(messages, timeout=CALL_TIMEOUT)


def test_bad_identities_are_refused_while_a_good_silo_finishes(
    federation: Federation, tiny_model_dir: Path
) -> None:
    pki, extra = federation.pki, federation.extra
    fingerprint = base_model_fingerprint(tiny_model_dir)
    revoke(pki.ca_dir, pki.silos[REVOKED_SILO].cert)
    target = federation.service.server.endpoint.target
    ca_only = grpc.ssl_channel_credentials(root_certificates=pki.coordinator.ca_cert.read_bytes())
    outcomes: dict[str, tuple[grpc.StatusCode, str | None]] = {}

    def record(case: str, channel: grpc.Channel, call: Callable[[grpc.Channel], object]) -> None:
        with channel:
            outcomes[case] = _failure(lambda: call(channel))

    record("no client certificate", grpc.secure_channel(target, ca_only), _status)
    record(
        "another CA", _channel(federation, extra["foreign"]), lambda c: _register(c, GOOD_SILO, fingerprint)
    )
    record(
        "expired", _channel(federation, extra["expired"]), lambda c: _register(c, EXPIRED_SILO, fingerprint)
    )
    record(
        "revoked",
        _channel(federation, pki.silos[REVOKED_SILO]),
        lambda c: _register(c, REVOKED_SILO, fingerprint),
    )
    record(
        "not on the allow list",
        _channel(federation, pki.silos[UNLISTED_SILO]),
        lambda c: _register(c, UNLISTED_SILO, fingerprint),
    )
    record("silo on the admin service", _channel(federation, pki.silos[OTHER_SILO]), _status)
    record(
        "operator on the silo service",
        _channel(federation, pki.operator),
        lambda c: _register(c, "operator", fingerprint),
    )
    record(
        "registers under another silo's name",
        _channel(federation, pki.silos[OTHER_SILO]),
        lambda c: _register(c, GOOD_SILO, fingerprint),
    )
    record(
        "uploads under another silo's name",
        _channel(federation, pki.silos[OTHER_SILO]),
        lambda c: _upload_as(c, GOOD_SILO),
    )
    assert outcomes == {
        "no client certificate": (HANDSHAKE_FAILED, None),
        "another CA": (HANDSHAKE_FAILED, None),
        "expired": (HANDSHAKE_FAILED, None),
        "revoked": (grpc.StatusCode.UNAUTHENTICATED, ErrorCode.CERTIFICATE_REVOKED),
        "not on the allow list": (grpc.StatusCode.PERMISSION_DENIED, ErrorCode.SILO_NOT_ALLOWED),
        "silo on the admin service": (grpc.StatusCode.PERMISSION_DENIED, ErrorCode.WRONG_ROLE),
        "operator on the silo service": (grpc.StatusCode.PERMISSION_DENIED, ErrorCode.WRONG_ROLE),
        "registers under another silo's name": (
            grpc.StatusCode.PERMISSION_DENIED,
            ErrorCode.IDENTITY_MISMATCH,
        ),
        "uploads under another silo's name": (grpc.StatusCode.PERMISSION_DENIED, ErrorCode.IDENTITY_MISMATCH),
    }
    federation.agent_thread.join(RUN_TIMEOUT_SECONDS)
    assert federation.agent_result, "the good silo did not finish"
    assert federation.agent_result[0] is not None
    assert federation.agent_result[0].state is RunState.FINISHED
    with _channel(federation, pki.operator) as channel:
        status = _status(channel)
    assert status.rounds_completed == ROUNDS
    silos = federation.service.orchestrator.silo_records()
    assert [record.silo_id for record in silos] == [GOOD_SILO]


def _served_serial(port: int, client: IssuedFiles) -> int:
    """The serial number of the certificate the coordinator presents in a fresh handshake."""
    context = ssl.create_default_context(cafile=str(client.ca_cert))
    context.load_cert_chain(str(client.cert), str(client.key))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=CALL_TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_a_renewed_coordinator_certificate_is_served_without_a_restart(
    federation: Federation, tmp_path: Path
) -> None:
    pki, port = federation.pki, federation.service.server.endpoint.port
    before = _served_serial(port, pki.operator)
    assert before == load_certificate(pki.coordinator.cert.read_bytes()).serial_number
    renewed = issue_certificate(pki.ca_dir, tmp_path / "renewed", Role.COORDINATOR, "coordinator")
    shutil.copyfile(renewed.key, pki.coordinator.key)
    shutil.copyfile(renewed.cert, pki.coordinator.cert)
    after = _served_serial(port, pki.operator)
    assert after == load_certificate(renewed.cert.read_bytes()).serial_number != before
    with _channel(federation, pki.operator) as channel:
        assert _status(channel).rounds_total == ROUNDS


def test_a_certificate_revoked_during_the_run_is_refused_from_its_next_call(federation: Federation) -> None:
    pki = federation.pki
    with _channel(federation, pki.operator) as channel:
        assert _status(channel).rounds_total == ROUNDS
        revoke(pki.ca_dir, pki.operator.cert)
        outcome = _failure(lambda: _status(channel))
    assert outcome == (grpc.StatusCode.UNAUTHENTICATED, ErrorCode.CERTIFICATE_REVOKED)
