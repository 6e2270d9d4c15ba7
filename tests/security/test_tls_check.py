"""A process's TLS files are checked before it starts: the key is the certificate's, the certificate is
the federation CA's, of the expected role and name, and valid now (a warning when it expires soon)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from aslora_rpc.certificates import CertificateError, Role, create_ca, issue_certificate
from aslora_rpc.local_pki import create_local_pki, tls_files
from aslora_rpc.tls import TlsFiles
from aslora_rpc.tls_check import RENEWAL_WARNING, check_tls_files

SILO = "hospital-a"
YEAR_DAYS = 365


def test_a_sound_set_is_summarised(tmp_path: Path) -> None:
    pki = create_local_pki(tmp_path, [SILO])
    summary = check_tls_files(tls_files(pki.silos[SILO]), Role.SILO, SILO)
    assert (summary.role, summary.name) == (Role.SILO, SILO)
    assert summary.renew_soon, "the local PKI's certificates live two days"


def test_each_mismatch_is_named(tmp_path: Path) -> None:
    pki = create_local_pki(tmp_path / "one", [SILO, "hospital-b"])
    other = create_local_pki(tmp_path / "two", [SILO])
    mine = pki.silos[SILO]
    cases = [
        (TlsFiles(mine.ca_cert, mine.cert, pki.silos["hospital-b"].key), Role.SILO, SILO, "does not fit"),
        (TlsFiles(other.silos[SILO].ca_cert, mine.cert, mine.key), Role.SILO, SILO, "is not from the CA"),
        (tls_files(mine), Role.COORDINATOR, None, "is a silo certificate, not a coordinator one"),
        (tls_files(mine), Role.SILO, "hospital-b", f"names {SILO!r} \\(its CN\\)"),
        (TlsFiles(mine.ca_cert, tmp_path / "missing.crt", mine.key), Role.SILO, SILO, "cannot read"),
    ]
    for files, role, name, message in cases:
        with pytest.raises(CertificateError, match=message):
            check_tls_files(files, role, name)


def test_an_expired_or_future_certificate_is_refused(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    issued = issue_certificate(ca.cert.parent, tmp_path / "issued", Role.SILO, SILO, days=YEAR_DAYS)
    files = tls_files(issued)
    now = datetime.datetime.now(datetime.UTC)
    with pytest.raises(CertificateError, match="expired on"):
        check_tls_files(files, Role.SILO, SILO, now=now + datetime.timedelta(days=YEAR_DAYS + 1))
    with pytest.raises(CertificateError, match="is not valid before"):
        check_tls_files(files, Role.SILO, SILO, now=now - datetime.timedelta(days=1))
    assert not check_tls_files(files, Role.SILO, SILO, now=now).renew_soon
    due = now + datetime.timedelta(days=YEAR_DAYS) - RENEWAL_WARNING / 2
    assert check_tls_files(files, Role.SILO, SILO, now=due).renew_soon
