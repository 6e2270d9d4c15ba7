"""`aslora coordinator`: serve a run, and the operator's commands against a running coordinator."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import grpc
import typer

from aslora_cli.output import OutputFormat, print_fields, print_json, print_table
from aslora_coordinator.admin_client import AdminClient
from aslora_coordinator.config_loader import load_coordinator_config
from aslora_coordinator.exporter import ExportFormat
from aslora_coordinator.service import CoordinatorService
from aslora_coordinator.state import CheckpointError, FileStateStore, InMemoryStateStore, StateStore
from aslora_coordinator.views import SiloView
from aslora_core.config import ConfigError, TaskName
from aslora_rpc.channels import open_channel
from aslora_rpc.endpoints import Endpoint, EndpointError
from aslora_rpc.messages import RunState
from aslora_rpc.tls import TlsFiles

coordinator_app = typer.Typer(
    help="Run the coordinator (serve), or inspect and control a running one.", no_args_is_help=True
)
DEFAULT_ADDRESS = "localhost:7443"
FAILED_EXIT_CODE = 1
CHECKPOINT_REFUSED_EXIT_CODE = 3
STATE_SUBFOLDER = "state"
"""Under --state-dir: the checkpoint (the rest of the folder holds spooled adapters and exports)."""

Address = Annotated[str, typer.Option("--address", help="The coordinator's gRPC address, host:port.")]
Insecure = Annotated[
    bool, typer.Option("--insecure", help="Plaintext instead of mutual TLS (loopback addresses only).")
]
CaCert = Annotated[Path | None, typer.Option(help="The federation's CA certificate (PEM).")]
Cert = Annotated[Path | None, typer.Option(help="This operator's certificate (PEM).")]
Key = Annotated[Path | None, typer.Option(help="This operator's private key (PEM).")]
ServerName = Annotated[str | None, typer.Option(help="Name to check in the coordinator's certificate.")]
Format = Annotated[OutputFormat, typer.Option("--format", help="json or table.")]


@coordinator_app.command("serve")
def serve(
    config: Annotated[Path, typer.Option(help="The coordinator's TOML config file (docs/operations.md).")],
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the run's checkpoint, spooled adapters and exports; a run checkpointed there "
            "is resumed (default: a temporary folder, no resume)."
        ),
    ] = None,
    insecure: Insecure = False,
) -> None:
    """Serve one federated run to its silos until it ends and the operator stops the coordinator."""
    try:
        settings = load_coordinator_config(config)
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--config") from error
    with _work_dir(state_dir) as work_dir:
        store: StateStore = (
            FileStateStore(work_dir / STATE_SUBFOLDER) if state_dir is not None else InMemoryStateStore()
        )
        try:
            service = CoordinatorService(settings, work_dir, insecure=insecure, store=store)
        except EndpointError as error:
            raise typer.BadParameter(str(error)) from error
        except CheckpointError as error:
            typer.echo(f"error: cannot resume from {state_dir}: {error}", err=True)
            raise typer.Exit(CHECKPOINT_REFUSED_EXIT_CODE) from error

        def on_signal(number: int, frame: FrameType | None) -> None:
            service.orchestrator.stop(f"signal {signal.Signals(number).name}")

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        state = service.serve_until_done()
    typer.echo(f"run ended: {state.value} ({service.orchestrator.reason})")
    if state is RunState.FAILED:
        raise typer.Exit(FAILED_EXIT_CODE)


@contextmanager
def _work_dir(state_dir: Path | None) -> Iterator[Path]:
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        yield state_dir
        return
    with tempfile.TemporaryDirectory(prefix="aslora-coordinator-") as folder:
        yield Path(folder)


@contextmanager
def _admin(
    address: str,
    insecure: bool,
    ca_cert: Path | None,
    cert: Path | None,
    key: Path | None,
    server_name: str | None,
) -> Iterator[AdminClient]:
    """An admin client over a channel that is closed afterwards; connection errors become clean exits."""
    tls = None
    if ca_cert is not None and cert is not None and key is not None:
        tls = TlsFiles(ca_cert=ca_cert, cert=cert, key=key)
    try:
        channel = open_channel(Endpoint.parse(address), tls, insecure=insecure, server_name=server_name)
    except EndpointError as error:
        raise typer.BadParameter(str(error)) from error
    try:
        yield AdminClient(channel)
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else None
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        typer.echo(f"error: {code.name if code else 'RPC failed'}: {details}", err=True)
        raise typer.Exit(FAILED_EXIT_CODE) from error
    finally:
        channel.close()


def _silo_rows(silos: list[SiloView]) -> list[list[object]]:
    return [
        [
            s.silo_id,
            s.dataset_size,
            "yes" if s.connected else "no",
            s.rounds_participated,
            s.epsilon_reported,
            s.epsilon_recomputed,
            s.noise_multiplier,
            s.sample_rate,
            s.declined_reason or "",
        ]
        for s in silos
    ]


SILO_COLUMNS = (
    "silo",
    "records",
    "connected",
    "rounds",
    "eps reported",
    "eps recomputed",
    "sigma",
    "q",
    "declined",
)


@coordinator_app.command("status")
def status(
    address: Address = DEFAULT_ADDRESS,
    insecure: Insecure = False,
    ca_cert: CaCert = None,
    cert: Cert = None,
    key: Key = None,
    tls_server_name: ServerName = None,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """The run's state, its rounds, the latest evaluation and every silo with its epsilon."""
    with _admin(address, insecure, ca_cert, cert, key, tls_server_name) as admin:
        view = admin.status()
    if output_format is OutputFormat.JSON:
        print_json(view)
        return
    print_fields(
        f"run {view.run_id}",
        [
            ("state", view.state.value),
            ("reason", view.reason or None),
            ("policy", view.policy),
            ("task", view.task),
            ("rounds", f"{view.rounds_completed} / {view.rounds_total}"),
            ("open round", view.open_round),
            ("accuracy", view.accuracy),
            ("loss", view.loss),
        ],
    )
    print_table("silos", SILO_COLUMNS, _silo_rows(view.silos))


@coordinator_app.command("silos")
def silos(
    address: Address = DEFAULT_ADDRESS,
    insecure: Insecure = False,
    ca_cert: CaCert = None,
    cert: Cert = None,
    key: Key = None,
    tls_server_name: ServerName = None,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Every registered silo: records, liveness, rounds, epsilon (reported and recomputed), sigma and q."""
    with _admin(address, insecure, ca_cert, cert, key, tls_server_name) as admin:
        views = admin.silos()
    if output_format is OutputFormat.JSON:
        print_json(views)
    else:
        print_table("silos", SILO_COLUMNS, _silo_rows(views))


@coordinator_app.command("privacy")
def privacy(
    address: Address = DEFAULT_ADDRESS,
    insecure: Insecure = False,
    ca_cert: CaCert = None,
    cert: Cert = None,
    key: Key = None,
    tls_server_name: ServerName = None,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """The privacy ledger: per silo, the epsilon it reported and the coordinator's recomputation."""
    with _admin(address, insecure, ca_cert, cert, key, tls_server_name) as admin:
        view = admin.ledger()
    if output_format is OutputFormat.JSON:
        print_json(view)
        return
    rows = [
        [e.silo_id, e.epsilon_reported, e.epsilon_recomputed, sum(event.steps for event in e.events)]
        for e in view.entries
    ]
    title = f"privacy ledger (delta {view.delta:g}, {view.accountant}, budget {view.budget or 'none'})"
    print_table(title, ("silo", "eps reported", "eps recomputed", "steps"), rows)


def _control(action: str, state: RunState, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.JSON:
        print_json({"action": action, "state": state.value})
    else:
        typer.echo(f"{action}: run is {state.value}")


@coordinator_app.command("pause")
def pause(
    address: Address = DEFAULT_ADDRESS,
    insecure: Insecure = False,
    ca_cert: CaCert = None,
    cert: Cert = None,
    key: Key = None,
    tls_server_name: ServerName = None,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Let the open round finish, then start no new round until `resume`."""
    with _admin(address, insecure, ca_cert, cert, key, tls_server_name) as admin:
        _control("pause", admin.pause(), output_format)


@coordinator_app.command("resume")
def resume(
    address: Address = DEFAULT_ADDRESS,
    insecure: Insecure = False,
    ca_cert: CaCert = None,
    cert: Cert = None,
    key: Key = None,
    tls_server_name: ServerName = None,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Start rounds again after a pause."""
    with _admin(address, insecure, ca_cert, cert, key, tls_server_name) as admin:
        _control("resume", admin.resume(), output_format)


@coordinator_app.command("stop")
def stop(
    reason: Annotated[str, typer.Option(help="Why, for the log and the silos.")] = "stopped by the operator",
    address: Address = DEFAULT_ADDRESS,
    insecure: Insecure = False,
    ca_cert: CaCert = None,
    cert: Cert = None,
    key: Key = None,
    tls_server_name: ServerName = None,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """End the run now (an open round is abandoned) and shut the coordinator down."""
    with _admin(address, insecure, ca_cert, cert, key, tls_server_name) as admin:
        _control("stop", admin.stop(reason), output_format)


@coordinator_app.command("export")
def export(
    out: Annotated[Path, typer.Option(help="Folder to write the adapter into.")],
    adapter_state: Annotated[
        bool,
        typer.Option(
            "--adapter-state", help="Write the plain adapter state (one safetensors file) instead of PEFT."
        ),
    ] = False,
    task: Annotated[
        TaskName | None,
        typer.Option(help="Refuse the export unless the run trains this task (its base model class)."),
    ] = None,
    address: Address = DEFAULT_ADDRESS,
    insecure: Insecure = False,
    ca_cert: CaCert = None,
    cert: Cert = None,
    key: Key = None,
    tls_server_name: ServerName = None,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Download the current global adapter as a PEFT adapter directory (for PeftModel.from_pretrained)."""
    export_format = ExportFormat.ADAPTER_STATE if adapter_state else ExportFormat.PEFT
    with _admin(address, insecure, ca_cert, cert, key, tls_server_name) as admin:
        if task is not None:
            running = admin.status().task
            if running != task.value:
                typer.echo(f"error: the run trains the {running} task, not {task.value}", err=True)
                raise typer.Exit(FAILED_EXIT_CODE)
        files = admin.export(export_format, out)
    if output_format is OutputFormat.JSON:
        print_json({"format": export_format.value, "files": [str(path) for path in files]})
    else:
        print_table(
            f"exported ({export_format.value})", ("file", "bytes"), [[p, p.stat().st_size] for p in files]
        )
