"""`aslora coordinator`: serve a run, and the operator's commands against a running coordinator.

`serve` imports the service (and with it torch) when it runs; the operator's commands never load it."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from aslora_cli.admin_connection import FAILED_EXIT_CODE, AdminConnection, Insecure, with_connection_options
from aslora_cli.federated_status import evaluation_releases, federated_fields, training_steps
from aslora_cli.logs import quiet_transformers
from aslora_cli.metavars import FLAG
from aslora_cli.output import OutputFormat, print_fields, print_json, print_table
from aslora_coordinator.config_loader import load_coordinator_config
from aslora_coordinator.export_format import ExportFormat
from aslora_coordinator.views import SiloView
from aslora_core.config import ConfigError, TaskName
from aslora_rpc.endpoints import EndpointError
from aslora_rpc.messages import RunState

coordinator_app = typer.Typer(
    help="Run the coordinator (serve), or inspect and control a running one.", no_args_is_help=True
)
CHECKPOINT_REFUSED_EXIT_CODE = 3
STATE_SUBFOLDER = "state"
"""Under --state-dir: the checkpoint (the rest of the folder holds spooled adapters and exports)."""

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
    from aslora_coordinator.service import CoordinatorService
    from aslora_coordinator.state import CheckpointError, FileStateStore, InMemoryStateStore, StateStore

    quiet_transformers()
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
@with_connection_options
def status(
    connection: AdminConnection,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """The run's state, its rounds, the latest evaluation and every silo with its epsilon."""
    with connection.open() as admin:
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
            *federated_fields(view.federated),
        ],
    )
    print_table("silos", SILO_COLUMNS, _silo_rows(view.silos))


@coordinator_app.command("silos")
@with_connection_options
def silos(
    connection: AdminConnection,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Every registered silo: records, liveness, rounds, epsilon (reported and recomputed), sigma and q."""
    with connection.open() as admin:
        views = admin.silos()
    if output_format is OutputFormat.JSON:
        print_json(views)
    else:
        print_table("silos", SILO_COLUMNS, _silo_rows(views))


@coordinator_app.command("privacy")
@with_connection_options
def privacy(
    connection: AdminConnection,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """The privacy ledger: per silo, the epsilon it reported and the coordinator's recomputation."""
    with connection.open() as admin:
        view = admin.ledger()
    if output_format is OutputFormat.JSON:
        print_json(view)
        return
    rows = [
        [
            e.silo_id,
            e.epsilon_reported,
            e.epsilon_recomputed,
            training_steps(e.events),
            evaluation_releases(e.events),
        ]
        for e in view.entries
    ]
    title = f"privacy ledger (delta {view.delta:g}, {view.accountant}, budget {view.budget or 'none'})"
    print_table(title, ("silo", "eps reported", "eps recomputed", "steps", "eval releases"), rows)


def _control(action: str, state: RunState, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.JSON:
        print_json({"action": action, "state": state.value})
    else:
        typer.echo(f"{action}: run is {state.value}")


@coordinator_app.command("pause")
@with_connection_options
def pause(
    connection: AdminConnection,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Let the open round finish, then start no new round until `resume`."""
    with connection.open() as admin:
        _control("pause", admin.pause(), output_format)


@coordinator_app.command("resume")
@with_connection_options
def resume(
    connection: AdminConnection,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Start rounds again after a pause."""
    with connection.open() as admin:
        _control("resume", admin.resume(), output_format)


@coordinator_app.command("stop")
@with_connection_options
def stop(
    connection: AdminConnection,
    reason: Annotated[str, typer.Option(help="Why, for the log and the silos.")] = "stopped by the operator",
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """End the run now (an open round is abandoned) and shut the coordinator down."""
    with connection.open() as admin:
        _control("stop", admin.stop(reason), output_format)


@coordinator_app.command("export")
@with_connection_options
def export(
    connection: AdminConnection,
    out: Annotated[Path, typer.Option(help="Folder to write the adapter into.")],
    adapter_state: Annotated[
        bool,
        typer.Option(
            "--adapter-state",
            metavar=FLAG,
            help="Write the plain adapter state (one safetensors file) instead of PEFT.",
        ),
    ] = False,
    task: Annotated[
        TaskName | None,
        typer.Option(help="Refuse the export unless the run trains this task (its base model class)."),
    ] = None,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Download the current global adapter as a PEFT adapter directory (for PeftModel.from_pretrained)."""
    export_format = ExportFormat.ADAPTER_STATE if adapter_state else ExportFormat.PEFT
    with connection.open() as admin:
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
