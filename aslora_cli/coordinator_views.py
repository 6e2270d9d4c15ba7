"""The operator's commands that read a run: status (also --watch), silos, privacy ledger, events, export."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from aslora_cli.admin_connection import FAILED_EXIT_CODE, AdminConnection, with_connection_options
from aslora_cli.coordinator_options import Format, RunOption
from aslora_cli.federated_status import evaluation_releases, federated_fields, training_steps
from aslora_cli.metavars import FLAG
from aslora_cli.output import (
    OutputFormat,
    clock_time,
    narrow,
    print_fields,
    print_json,
    print_table,
    to_jsonable,
)
from aslora_coordinator.export_format import ExportFormat
from aslora_coordinator.views import SiloView, StatusView
from aslora_core.config import TaskName
from aslora_core.round_numbers import round_number

DEFAULT_WATCH_SECONDS = 2.0
MIN_WATCH_SECONDS = 0.1
"""`status --watch` refreshes at most this often (each refresh is one admin call)."""


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
                    typer.echo(f"{clock_time(event.time)}  {run}  {event.kind.value}  {event.message}")
        except KeyboardInterrupt:
            return


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
