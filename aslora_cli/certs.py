"""`aslora certs`: the federation's private CA, its role certificates, and its deny list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from aslora_rpc.certificates import (
    DEFAULT_CA_DAYS,
    DEFAULT_CA_NAME,
    DEFAULT_CERT_DAYS,
    DEFAULT_COORDINATOR_SANS,
    CertificateError,
    Role,
    certificate_fingerprint,
    create_ca,
    issue_certificate,
    load_certificate,
    load_identity,
    revoke,
)

certs_app = typer.Typer(
    help="Create the federation's private CA, issue certificates by role, revoke them.", no_args_is_help=True
)
FAILED_EXIT_CODE = 1

CaDir = Annotated[Path, typer.Option("--ca", help="The CA's folder (ca.crt, ca.key), from `certs init`.")]
OutDir = Annotated[Path, typer.Option("--out", help="Folder to write the files to (created if missing).")]


@certs_app.command("init")
def init(
    out: OutDir,
    name: Annotated[str, typer.Option(help="The CA certificate's subject CN.")] = DEFAULT_CA_NAME,
    days: Annotated[int, typer.Option(help="Days the CA certificate stays valid.")] = DEFAULT_CA_DAYS,
) -> None:
    """Create the CA key (ca.key, mode 0600; keep it offline), ca.crt and an empty deny list, revoked.json."""
    try:
        files = create_ca(out, name=name, days=days)
    except (CertificateError, OSError) as error:
        _fail(error)
    typer.echo(f"CA certificate: {files.cert}")
    typer.echo(f"CA private key: {files.key} (mode 0600; never copy it into a cluster)")
    typer.echo(f"deny list: {files.revoked} (empty; `certs revoke` adds to it)")


@certs_app.command("issue")
def issue(
    role: Annotated[Role, typer.Option(help="coordinator (server), silo or operator (clients).")],
    name: Annotated[str, typer.Option(help="The subject CN: the silo's or operator's identity; file stem.")],
    ca: CaDir,
    out: OutDir,
    san: Annotated[
        list[str] | None,
        typer.Option(
            metavar="HOST",
            help="Coordinator only: a DNS name or IP address silos dial (repeatable; default "
            + " and ".join(DEFAULT_COORDINATOR_SANS)
            + ").",
        ),
    ] = None,
    days: Annotated[int, typer.Option(help="Days the certificate stays valid.")] = DEFAULT_CERT_DAYS,
) -> None:
    """Issue NAME.crt and NAME.key (mode 0600) signed by the CA, and copy ca.crt beside them."""
    try:
        files = issue_certificate(ca, out, role, name, sans=san or (), days=days)
    except (CertificateError, OSError) as error:
        _fail(error)
    typer.echo(f"{role.value} certificate: {files.cert}")
    typer.echo(f"{role.value} private key: {files.key} (mode 0600)")
    typer.echo(f"CA certificate: {files.ca_cert}")


@certs_app.command("revoke")
def revoke_command(
    ca: CaDir,
    cert: Annotated[Path, typer.Option("--cert", help="The certificate (PEM) to revoke.")],
) -> None:
    """Add a certificate's serial number to the CA's deny list (revoked.json), which the coordinator reads."""
    try:
        serial = revoke(ca, cert)
    except (CertificateError, OSError) as error:
        _fail(error)
    typer.echo(f"revoked serial {serial:x}")


@certs_app.command("fingerprint")
def fingerprint(
    cert: Annotated[Path, typer.Option("--cert", help="The certificate (PEM) to fingerprint.")],
) -> None:
    """Print a certificate's name and SHA-256 fingerprint, which silos pin for secure aggregation."""
    try:
        certificate = load_certificate(cert.read_bytes())
        identity = load_identity(certificate)
    except (CertificateError, OSError) as error:
        _fail(error)
    typer.echo(f"{identity.role.value} {identity.name}: sha256 {certificate_fingerprint(certificate)}")


def _fail(error: Exception) -> NoReturn:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(FAILED_EXIT_CODE)
