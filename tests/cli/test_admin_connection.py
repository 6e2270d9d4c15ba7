"""The operator commands' shared connection options: every command takes them, and over mutual TLS the
operator's certificate is let in while a silo's is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aslora_cli.admin_connection import CONNECTION_OPTIONS, FAILED_EXIT_CODE
from aslora_cli.main import app
from aslora_coordinator.service import CoordinatorService
from aslora_rpc.certificates import IssuedFiles
from aslora_rpc.local_pki import LocalPki, create_local_pki, tls_table
from tests.grpc.helpers import coordinator_tables, load_config

OPERATOR_COMMANDS = (
    "status",
    "silos",
    "privacy",
    "pause",
    "resume",
    "shutdown",
    "stop",
    "export",
    "submit",
    "runs",
    "cancel",
)
USAGE_EXIT_CODE = 2
"""Click's exit status for a bad parameter."""
SILO = "silo-a"


def _option_names() -> list[str]:
    return ["--" + option.name.replace("_", "-") for option in CONNECTION_OPTIONS]


@pytest.mark.parametrize("command", OPERATOR_COMMANDS)
def test_every_operator_command_takes_the_connection_options(command: str) -> None:
    outcome = CliRunner().invoke(app, ["coordinator", command, "--help"], terminal_width=200)
    assert outcome.exit_code == 0, outcome.output
    assert all(name in outcome.output for name in _option_names())


def test_a_partial_set_of_tls_files_is_refused(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(
        app, ["coordinator", "status", "--address", "127.0.0.1:1", "--ca-cert", str(tmp_path / "ca.crt")]
    )
    assert outcome.exit_code == USAGE_EXIT_CODE
    assert "all three of --ca-cert, --cert and --key" in outcome.output


@pytest.fixture
def tls_coordinator(tiny_model_dir: Path, tmp_path: Path) -> Iterator[tuple[CoordinatorService, LocalPki]]:
    """A coordinator with mutual TLS waiting for its silos (none come)."""
    pki = create_local_pki(tmp_path / "pki", [SILO])
    tables = coordinator_tables(tiny_model_dir, rounds=1)
    tables["tls"] = tls_table(pki.coordinator)
    service = CoordinatorService(load_config(tmp_path / "c.toml", tables), tmp_path / "work", insecure=False)
    try:
        yield service, pki
    finally:
        service.shutdown()


def _status_as(service: CoordinatorService, files: IssuedFiles) -> tuple[int, str]:
    arguments = ["coordinator", "status", "--format", "json", "--address", str(service.server.endpoint)]
    arguments += ["--ca-cert", str(files.ca_cert), "--cert", str(files.cert), "--key", str(files.key)]
    outcome = CliRunner().invoke(app, arguments)
    return outcome.exit_code, outcome.output


def test_the_operator_reads_the_status_over_mutual_tls_and_a_silo_cannot(
    tls_coordinator: tuple[CoordinatorService, LocalPki],
) -> None:
    service, pki = tls_coordinator
    code, output = _status_as(service, pki.operator)
    assert code == 0, output
    assert json.loads(output)["rounds_completed"] == 0
    code, output = _status_as(service, pki.silos[SILO])
    assert code == FAILED_EXIT_CODE
    assert "PERMISSION_DENIED" in output
