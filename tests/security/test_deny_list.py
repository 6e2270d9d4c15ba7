"""The coordinator's deny list: empty from `aslora certs init`, revocations picked up without a restart,
and a list that goes missing refuses everyone instead of revoking nobody."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aslora_cli.main import app
from aslora_coordinator.authorization import DenyList
from aslora_rpc.certificates import (
    REVOKED_FILE,
    IssuedFiles,
    Role,
    create_ca,
    issue_certificate,
    load_certificate,
    read_deny_list,
    revoke,
)


def _serial(issued: IssuedFiles) -> int:
    return load_certificate(issued.cert.read_bytes()).serial_number


@pytest.fixture
def silo(tmp_path: Path) -> IssuedFiles:
    """A silo certificate of a fresh CA in `tmp_path / "ca"`."""
    create_ca(tmp_path / "ca")
    return issue_certificate(tmp_path / "ca", tmp_path / "issued", Role.SILO, "hospital-a")


def test_certs_init_writes_an_empty_deny_list_beside_the_ca(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(app, ["certs", "init", "--out", str(tmp_path / "pki")])
    assert outcome.exit_code == 0, outcome.output
    deny_list = tmp_path / "pki" / REVOKED_FILE
    assert deny_list.is_file()
    assert str(deny_list) in outcome.output
    assert read_deny_list(deny_list) == frozenset()
    silo = issue_certificate(tmp_path / "pki", tmp_path / "issued", Role.SILO, "hospital-a")
    assert not DenyList(deny_list).contains(_serial(silo))


def test_a_revocation_is_picked_up_by_a_running_deny_list(silo: IssuedFiles, tmp_path: Path) -> None:
    deny_list = DenyList(tmp_path / "ca" / REVOKED_FILE)
    assert not deny_list.contains(_serial(silo))
    revoke(tmp_path / "ca", silo.cert)
    assert deny_list.contains(_serial(silo))


def test_a_deny_list_that_goes_missing_refuses_everyone(silo: IssuedFiles, tmp_path: Path) -> None:
    path = tmp_path / "ca" / REVOKED_FILE
    deny_list = DenyList(path)
    assert not deny_list.contains(_serial(silo))
    path.unlink()
    assert deny_list.contains(_serial(silo))


def test_without_a_deny_list_nothing_is_revoked(silo: IssuedFiles) -> None:
    assert not DenyList(None).contains(_serial(silo))
