"""`aslora coordinator`: serve the federation, and the operator's commands against a running coordinator:
submit, list and cancel runs, follow and control them, export their adapters, shut the service down.

`serve` imports the service (and with it torch) when it runs; the operator's commands never load it."""

from __future__ import annotations

import json
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from aslora_cli.admin_connection import FAILED_EXIT_CODE, AdminConnection, Insecure, with_connection_options
from aslora_cli.checks import coordinator_check
from aslora_cli.federated_status import evaluation_releases, federated_fields, training_steps
from aslora_cli.logs import quiet_transformers
from aslora_cli.metavars import FLAG
from aslora_cli.output import (
    OutputFormat,
    OutputOption,
    narrow,
    print_fields,
    print_json,
    print_table,
    to_jsonable,
)
from aslora_coordinator.config_loader import load_coordinator_config, parse_run_text
from aslora_coordinator.export_format import ExportFormat
from aslora_coordinator.views import SiloView, StatusView
from aslora_core.config import ConfigError, TaskName
from aslora_core.round_numbers import round_number
from aslora_rpc.endpoints import EndpointError
from aslora_rpc.messages import RunState

coordinator_app = typer.Typer(
    help="Run the coordinator (serve), or inspect and control a running one.", no_args_is_help=True
)
coordinator_app.command("check")(coordinator_check)
CHECKPOINT_REFUSED_EXIT_CODE = 3
STATE_SUBFOLDER = "state"
"""Under --state-dir: the run queue and every run's checkpoint (the rest of the folder holds results,
spooled adapters and exports)."""

Format = OutputOption
ShutdownReason = Annotated[str, typer.Option(help="Why, for the coordinator's log.")]
SHUTDOWN_REASON = "shut down by the operator"
DEFAULT_WATCH_SECONDS = 2.0
MIN_WATCH_SECONDS = 0.1
"""`status --watch` refreshes at most this often (each refresh is one admin call)."""
RunOption = Annotated[
    str,
    typer.Option("--run", metavar="ID", help="The run (default: the active run, else the latest)."),
]


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
    """Serve the federation: the runs submitted (the config's own run first, if it holds one), one after
    another, until the operator shuts the service down."""
    try:
        settings = load_coordinator_config(config)
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--config") from error
    from aslora_coordinator.service import CoordinatorService
    from aslora_coordinator.state import (
        CheckpointError,
        FederationStore,
        FileFederationStore,
        InMemoryFederationStore,
    )

    quiet_transformers()
    with _work_dir(state_dir) as work_dir:
        store: FederationStore = (
            FileFederationStore(work_dir / STATE_SUBFOLDER)
            if state_dir is not None
            else InMemoryFederationStore()
        )
        try:
            service = CoordinatorService(settings, work_dir, insecure=insecure, store=store)
        except EndpointError as error:
            raise typer.BadParameter(str(error)) from error
        except CheckpointError as error:
            typer.echo(f"error: cannot resume from {state_dir}: {error}", err=True)
            raise typer.Exit(CHECKPOINT_REFUSED_EXIT_CODE) from error

        def on_signal(number: int, frame: FrameType | None) -> None:
            service.request_shutdown(f"signal {signal.Signals(number).name}")

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        state = service.serve_until_shutdown()
    typer.echo(f"coordinator stopped; latest run: {state.value if state else 'none ended'}")
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
            (f"evicted: {s.declined_reason}" if s.evicted else s.declined_reason) or "",
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
SILO_WIDE_COLUMNS = ("sigma", "q")
"""Shown by `-o wide` only."""


def _print_silos(silos: list[SiloView], output_format: OutputFormat) -> None:
    print_table("silos", *narrow(SILO_COLUMNS, _silo_rows(silos), SILO_WIDE_COLUMNS, output_format))


@coordinator_app.command("status")
@with_connection_options
def status(
    connection: AdminConnection,
    run: RunOption = "",
    output_format: Format = OutputFormat.TABLE,
    watch: Annotated[
        bool,
        typer.Option("--watch", metavar=FLAG, help="Refresh every --interval until the run ends."),
    ] = False,
    interval: Annotated[
        float, typer.Option(min=MIN_WATCH_SECONDS, metavar="SECONDS", help="Seconds between refreshes.")
    ] = DEFAULT_WATCH_SECONDS,
) -> None:
    """A run's state, what it waits for, its rounds, the latest evaluation and every silo with its epsilon;
    with --watch, refreshed until the run ends (or Ctrl-C)."""
    with connection.open() as admin:
        view = admin.status(run)
        _print_status(view, output_format)
        try:
            while watch and not view.state.ended:
                time.sleep(interval)
                # The run watched stays the same one even when the service moves on to the next.
                view = admin.status(view.run_id)
                typer.echo("")
                _print_status(view, output_format)
        except KeyboardInterrupt:
            return


def _print_status(view: StatusView, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.JSON:
        print_json(view)
        return
    print_fields(
        f"run {view.run_id}",
        [
            ("state", view.state.value),
            ("reason", view.reason or None),
            ("waiting", view.waiting_for or None),
            ("policy", view.policy),
            ("task", view.task),
            ("rounds", f"{view.rounds_completed} / {view.rounds_total}"),
            ("open round", None if view.open_round is None else round_number(view.open_round)),
            ("accuracy", view.accuracy),
            ("loss", view.loss),
            *federated_fields(view.federated),
        ],
    )
    _print_silos(view.silos, output_format)


@coordinator_app.command("silos")
@with_connection_options
def silos(
    connection: AdminConnection,
    run: RunOption = "",
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Every silo of a run: records, liveness, rounds, epsilon (reported and recomputed), sigma and q, and
    why a silo declined the run or a task."""
    with connection.open() as admin:
        views = admin.silos(run)
    if output_format is OutputFormat.JSON:
        print_json(views)
    else:
        _print_silos(views, output_format)


@coordinator_app.command("privacy")
@with_connection_options
def privacy(
    connection: AdminConnection,
    run: RunOption = "",
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """A run's privacy ledger: per silo, the epsilon it reported and the coordinator's recomputation."""
    with connection.open() as admin:
        view = admin.ledger(run)
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


def _control(action: str, state: RunState | None, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.JSON:
        print_json({"action": action, "state": None if state is None else state.value})
    elif state is None:
        typer.echo(f"{action}: no run was active")
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


@coordinator_app.command("evict")
@with_connection_options
def evict(
    connection: AdminConnection,
    silo: Annotated[str, typer.Option("--silo", metavar="NAME", help="The silo to evict.")],
    reason: Annotated[str, typer.Option(help="Why, shown with the silo.")] = "evicted by the operator",
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Take a silo out of the active run: it gets no further task in the run and may not register again
    (its ledger line stays)."""
    with connection.open() as admin:
        _control(f"evict {silo}", admin.evict(silo, reason), output_format)


@coordinator_app.command("shutdown")
@with_connection_options
def shutdown(
    connection: AdminConnection,
    reason: Annotated[
        str, typer.Option(help="Why, for the coordinator's log.")
    ] = "shut down by the operator",
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Stop the coordinator service. The active run is checkpointed and resumes, with the queue, when the
    service starts again on the same --state-dir; to end a run, cancel it."""
    with connection.open() as admin:
        _control("shutdown", admin.shutdown(reason), output_format)


@coordinator_app.command("stop")
@with_connection_options
def stop(
    connection: AdminConnection,
    reason: Annotated[
        str, typer.Option(help="Why, for the coordinator's log.")
    ] = "shut down by the operator",
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Renamed `shutdown` (kept as an alias): stops the service; the active run resumes on a restart."""
    typer.echo(
        "note: `stop` is now `shutdown`: it stops the service and the active run resumes when the service "
        "starts again; `aslora coordinator cancel --run ID` ends a run",
        err=True,
    )
    with connection.open() as admin:
        _control("shutdown", admin.shutdown(reason), output_format)


@coordinator_app.command("submit")
@with_connection_options
def submit(
    connection: AdminConnection,
    run_file: Annotated[
        Path,
        typer.Argument(
            metavar="RUN.TOML",
            help="The run's settings: model_path, task, labels, [federation], [lora], [privacy], [training], "
            "[evaluation] (paths are on the coordinator's machine; docs/operations.md).",
        ),
    ],
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Queue a run; runs execute one after another in submission order. Its keys are checked here first
    (a mistake ends with exit 2 before anything is sent); the coordinator checks them again."""
    try:
        text = run_file.read_text(encoding="utf-8")
    except OSError as error:
        raise typer.BadParameter(
            f"cannot read {run_file}: {error.strerror}", param_hint="RUN.TOML"
        ) from error
    parse_run_text(text, str(run_file), None)
    with connection.open() as admin:
        run_id, ahead = admin.submit(text, run_file.name)
    if output_format is OutputFormat.JSON:
        print_json({"run_id": run_id, "queued_ahead": ahead})
    else:
        typer.echo(f"submitted run {run_id} ({ahead} run(s) ahead of it)")


RUN_COLUMNS = (
    "run",
    "state",
    "round",
    "epsilon",
    "policy",
    "task",
    "submitted",
    "started",
    "ended",
    "reason",
)


@coordinator_app.command("runs")
@with_connection_options
def runs(
    connection: AdminConnection,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Every submitted run, in submission order: state, rounds, epsilon spent, policy, task and times."""
    with connection.open() as admin:
        views = admin.runs()
    if output_format is OutputFormat.JSON:
        print_json(views)
        return
    rows = [
        [
            v.run_id,
            v.state.value,
            f"{v.rounds_completed} / {v.rounds_total}",
            v.epsilon_spent,
            v.policy,
            v.task,
            _clock_time(v.submitted_at),
            _clock_time(v.started_at),
            _clock_time(v.ended_at),
            v.reason,
        ]
        for v in views
    ]
    print_table("runs", RUN_COLUMNS, rows)


def _clock_time(seconds: float | None) -> str:
    """A Unix time as the local ISO date and time (empty for none)."""
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds).isoformat(sep=" ", timespec="seconds")


@coordinator_app.command("events")
@with_connection_options
def events(
    connection: AdminConnection,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Follow the coordinator's lifecycle events (runs started, resumed and ended, silos registered,
    declined and evicted, rounds opened and closed): the recent ones first, then each as it happens, until
    the coordinator shuts down (or Ctrl-C). With -o json, one JSON document per line."""
    with connection.open() as admin:
        try:
            for event in admin.events():
                if output_format is OutputFormat.JSON:
                    typer.echo(json.dumps(to_jsonable(event)))
                else:
                    run = f"run {event.run_id}" if event.run_id else "service"
                    typer.echo(f"{_clock_time(event.time)}  {run}  {event.kind.value}  {event.message}")
        except KeyboardInterrupt:
            return


@coordinator_app.command("cancel")
@with_connection_options
def cancel(
    connection: AdminConnection,
    run: Annotated[str, typer.Option("--run", metavar="ID", help="The run to cancel.")],
    reason: Annotated[str, typer.Option(help="Why, for the run's record.")] = "cancelled by the operator",
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Cancel a queued run (it never starts) or the active one (it ends now with its partial results)."""
    with connection.open() as admin:
        _control(f"cancel {run}", admin.cancel(run, reason), output_format)


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
    run: RunOption = "",
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Download a run's global adapter as a PEFT adapter directory (for PeftModel.from_pretrained)."""
    export_format = ExportFormat.ADAPTER_STATE if adapter_state else ExportFormat.PEFT
    with connection.open() as admin:
        if task is not None:
            running = admin.status(run).task
            if running != task.value:
                typer.echo(f"error: the run trains the {running} task, not {task.value}", err=True)
                raise typer.Exit(FAILED_EXIT_CODE)
        files = admin.export(export_format, out, run)
    if output_format is OutputFormat.JSON:
        print_json({"format": export_format.value, "files": [str(path) for path in files]})
    else:
        print_table(
            f"exported ({export_format.value})", ("file", "bytes"), [[p, p.stat().st_size] for p in files]
        )
