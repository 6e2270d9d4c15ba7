"""The connection options that every operator command shares, declared once and added to each command.

Each option may instead come from an environment variable (ASLORA_COORDINATOR, ASLORA_CA, ASLORA_CERT,
ASLORA_KEY) or from the operator's context file (aslora_cli/operator_context.py): an option given on the
command line wins over the environment, which wins over the context."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import grpc
import typer

from aslora_cli.metavars import FLAG
from aslora_cli.operator_context import OperatorContext, load_context
from aslora_coordinator.admin_client import AdminClient
from aslora_rpc.channels import open_channel
from aslora_rpc.endpoints import Endpoint, EndpointError, TlsRequiredError
from aslora_rpc.tls import TlsFiles
from aslora_rpc.tls_probe import speaks_tls

DEFAULT_ADDRESS = "localhost:7443"
FAILED_EXIT_CODE = 1
Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure", metavar=FLAG, help="Plaintext instead of mutual TLS (loopback addresses only)."
    ),
]
CONNECTION_PARAMETER = "connection"
"""The name under which an operator command receives its `AdminConnection`."""
ADDRESS_ENV = "ASLORA_COORDINATOR"
CA_ENV = "ASLORA_CA"
CERT_ENV = "ASLORA_CERT"
KEY_ENV = "ASLORA_KEY"


@dataclass(frozen=True)
class AdminConnection:
    """Where an operator command finds the coordinator, and the files that authenticate it there."""

    address: str
    insecure: bool
    ca_cert: Path | None
    cert: Path | None
    key: Path | None
    server_name: str | None

    def tls(self) -> TlsFiles | None:
        """The mutual-TLS files, None when none is given; a partial set is refused."""
        files = (self.ca_cert, self.cert, self.key)
        if all(path is None for path in files):
            return None
        if self.ca_cert is None or self.cert is None or self.key is None:
            raise typer.BadParameter("mutual TLS needs all three of --ca-cert, --cert and --key")
        return TlsFiles(ca_cert=self.ca_cert, cert=self.cert, key=self.key)

    @contextmanager
    def open(self) -> Iterator[AdminClient]:
        """An admin client over a channel closed afterwards; RPC errors become a message and exit 1."""
        with self.channel() as channel:
            yield AdminClient(channel)

    @contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        """A channel to the coordinator, closed afterwards; RPC errors become a message and exit 1."""
        try:
            channel = open_channel(
                Endpoint.parse(self.address), self.tls(), insecure=self.insecure, server_name=self.server_name
            )
        except EndpointError as error:
            raise typer.BadParameter(str(error)) from error
        try:
            yield channel
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            endpoint = Endpoint.parse(self.address)
            if self.insecure and code is grpc.StatusCode.UNAVAILABLE and speaks_tls(endpoint):
                raise TlsRequiredError(
                    f"the coordinator at {endpoint} requires mutual TLS; this command connected in "
                    "plaintext (--insecure)"
                ) from error
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            typer.echo(f"error: {code.name if code else 'RPC failed'}: {details}", err=True)
            raise typer.Exit(FAILED_EXIT_CODE) from error
        finally:
            channel.close()


def _option(name: str, annotation: object, default: object) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


CONNECTION_OPTIONS = (
    _option(
        "address",
        Annotated[
            str | None,
            typer.Option(
                "--address",
                envvar=ADDRESS_ENV,
                metavar="HOST:PORT",
                help=f"The coordinator's gRPC address (default: the context's, else {DEFAULT_ADDRESS}).",
            ),
        ],
        None,
    ),
    _option(
        "insecure",
        Insecure,
        False,
    ),
    _option(
        "ca_cert",
        Annotated[Path | None, typer.Option(envvar=CA_ENV, help="The federation's CA certificate (PEM).")],
        None,
    ),
    _option(
        "cert",
        Annotated[Path | None, typer.Option(envvar=CERT_ENV, help="This operator's certificate (PEM).")],
        None,
    ),
    _option(
        "key",
        Annotated[Path | None, typer.Option(envvar=KEY_ENV, help="This operator's private key (PEM).")],
        None,
    ),
    _option(
        "tls_server_name",
        Annotated[str | None, typer.Option(help="Name to check in the coordinator's certificate.")],
        None,
    ),
    _option(
        "context",
        Annotated[
            str | None,
            typer.Option(
                metavar="NAME",
                help="The context to use from the operator's context file (default: its `current`).",
            ),
        ],
        None,
    ),
)
"""The options appended to every operator command, after its own."""


def with_connection_options(command: Callable[..., None]) -> Callable[..., None]:
    """`command`, which takes an `AdminConnection` as `connection`, as a Typer command that takes the
    connection options instead (Typer reads the parameters from the returned function's signature)."""
    parameters = inspect.signature(command, eval_str=True).parameters.values()
    own = [p for p in parameters if p.name != CONNECTION_PARAMETER]

    @functools.wraps(command)
    def with_options(**arguments: object) -> None:
        context = load_context(_text(arguments.pop("context"))) or OperatorContext(name="")
        connection = AdminConnection(
            address=_text(arguments.pop("address")) or context.address or DEFAULT_ADDRESS,
            insecure=bool(arguments.pop("insecure")),
            ca_cert=_path(arguments.pop("ca_cert")) or context.ca_cert,
            cert=_path(arguments.pop("cert")) or context.cert,
            key=_path(arguments.pop("key")) or context.key,
            server_name=_text(arguments.pop("tls_server_name")) or context.tls_server_name,
        )
        command(**{CONNECTION_PARAMETER: connection}, **arguments)

    # inspect.signature, and so Typer, reads `__signature__`, which typeshed does not declare on functions.
    with_options.__signature__ = inspect.Signature([*own, *CONNECTION_OPTIONS])  # type: ignore[attr-defined]
    return with_options


def _path(value: object) -> Path | None:
    return None if value is None else Path(str(value))


def _text(value: object) -> str | None:
    return None if value is None else str(value)
