"""`aslora coordinator`: serve the federation, and the operator's commands against a running coordinator:
submit, list and cancel runs, follow and control them, export their adapters, shut the service down.

`serve` imports the service (and with it torch) when it runs; the operator's commands
(`coordinator_views.py`, `coordinator_control.py`) never load it."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from aslora_cli import coordinator_control, coordinator_dashboard, coordinator_views
from aslora_cli.admin_connection import FAILED_EXIT_CODE, Insecure
from aslora_cli.checks import coordinator_check
from aslora_cli.logs import quiet_transformers
from aslora_coordinator.config_loader import load_coordinator_config
from aslora_core.config import ConfigError
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


for name, command in (
    ("status", coordinator_views.status),
    ("silos", coordinator_views.silos),
    ("privacy", coordinator_views.privacy),
    ("events", coordinator_views.events),
    ("dashboard", coordinator_dashboard.dashboard),
    ("export", coordinator_views.export),
    ("submit", coordinator_control.submit),
    ("runs", coordinator_control.runs),
    ("cancel", coordinator_control.cancel),
    ("pause", coordinator_control.pause),
    ("resume", coordinator_control.resume),
    ("evict", coordinator_control.evict),
    ("shutdown", coordinator_control.shutdown),
    ("stop", coordinator_control.stop),
):
    coordinator_app.command(name)(command)
