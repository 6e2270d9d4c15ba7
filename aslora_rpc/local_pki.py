"""A throwaway CA and every certificate one run on this machine needs (simulate, demos, tests)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aslora_rpc.certificates import IssuedFiles, Role, create_ca, issue_certificate
from aslora_rpc.tls import TlsFiles

LOCAL_PKI_DAYS = 2
"""Certificates made on the fly outlive any local run, and not much more."""
COORDINATOR_NAME = "coordinator"
OPERATOR_NAME = "operator"
CA_FOLDER = "ca"
ISSUED_FOLDER = "issued"


@dataclass(frozen=True)
class LocalPki:
    """A CA folder and the certificates issued from it: the coordinator's, an operator's, one per silo."""

    ca_dir: Path
    coordinator: IssuedFiles
    operator: IssuedFiles
    silos: dict[str, IssuedFiles]


def create_local_pki(out_dir: Path, silo_names: Iterable[str]) -> LocalPki:
    """Create a CA under `out_dir` and issue the coordinator (SANs localhost, 127.0.0.1), operator and silo
    certificates, valid for LOCAL_PKI_DAYS."""
    ca_dir, issued = out_dir / CA_FOLDER, out_dir / ISSUED_FOLDER
    create_ca(ca_dir, days=LOCAL_PKI_DAYS)

    def issue(role: Role, name: str) -> IssuedFiles:
        return issue_certificate(ca_dir, issued, role, name, days=LOCAL_PKI_DAYS)

    return LocalPki(
        ca_dir=ca_dir,
        coordinator=issue(Role.COORDINATOR, COORDINATOR_NAME),
        operator=issue(Role.OPERATOR, OPERATOR_NAME),
        silos={name: issue(Role.SILO, name) for name in silo_names},
    )


def tls_files(issued: IssuedFiles) -> TlsFiles:
    """The [tls] files of a process holding `issued`."""
    return TlsFiles(ca_cert=issued.ca_cert, cert=issued.cert, key=issued.key)


def tls_table(issued: IssuedFiles) -> dict[str, str]:
    """The [tls] table of a config file for a process holding `issued`."""
    return {"ca_cert": str(issued.ca_cert), "cert": str(issued.cert), "key": str(issued.key)}
