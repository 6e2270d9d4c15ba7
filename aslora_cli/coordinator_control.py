"""The operator's commands that act: submit, list and cancel runs, pause and resume the active run, evict a
silo, shut the service down."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aslora_cli.admin_connection import AdminConnection, with_connection_options
from aslora_cli.coordinator_options import SHUTDOWN_REASON, Format, ShutdownReason
from aslora_cli.output import (
    OutputFormat,
    clock_time,
    print_json,
    print_table,
)
from aslora_coordinator.config_loader import parse_run_text
from aslora_rpc.messages import RunState


def _control(action: str, state: RunState | None, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.JSON:
        print_json({"action": action, "state": None if state is None else state.value})
    elif state is None:
        typer.echo(f"{action}: no run was active")
    else:
        typer.echo(f"{action}: run is {state.value}")


@with_connection_options
def pause(
    connection: AdminConnection,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Let the open round finish, then start no new round until `resume`."""
    with connection.open() as admin:
        _control("pause", admin.pause(), output_format)


@with_connection_options
def resume(
    connection: AdminConnection,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Start rounds again after a pause."""
    with connection.open() as admin:
        _control("resume", admin.resume(), output_format)


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


@with_connection_options
def shutdown(
    connection: AdminConnection,
    reason: ShutdownReason = SHUTDOWN_REASON,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Stop the coordinator service. The active run is checkpointed and resumes, with the queue, when the
    service starts again on the same --state-dir; to end a run, cancel it."""
    _shut_down(connection, reason, output_format)


@with_connection_options
def stop(
    connection: AdminConnection,
    reason: ShutdownReason = SHUTDOWN_REASON,
    output_format: Format = OutputFormat.TABLE,
) -> None:
    """Renamed `shutdown` (kept as an alias): stops the service; the active run resumes on a restart."""
    typer.echo(
        "note: `stop` is now `shutdown`: it stops the service and the active run resumes when the service "
        "starts again; `aslora coordinator cancel --run ID` ends a run",
        err=True,
    )
    _shut_down(connection, reason, output_format)


def _shut_down(connection: AdminConnection, reason: str, output_format: OutputFormat) -> None:
    with connection.open() as admin:
        _control("shutdown", admin.shutdown(reason), output_format)


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
            clock_time(v.submitted_at),
            clock_time(v.started_at),
            clock_time(v.ended_at),
            v.reason,
        ]
        for v in views
    ]
    print_table("runs", RUN_COLUMNS, rows)


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
