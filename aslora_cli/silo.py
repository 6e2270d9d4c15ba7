"""`aslora silo run`: one silo's agent, from its config file, taking part in run after run until it is
stopped (or has served --max-runs runs); the agent, and with it torch, is imported when the command runs."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Annotated

import grpc
import typer

from aslora_cli.admin_connection import Insecure
from aslora_cli.checks import silo_check
from aslora_cli.display import SiloDisplay
from aslora_cli.logs import quiet_transformers
from aslora_cli.metavars import FLAG
from aslora_core.config import TaskName
from aslora_rpc.endpoints import EndpointError
from aslora_rpc.messages import RunState
from aslora_silo.config import load_silo_config
from aslora_silo.errors import SiloError
from aslora_silo.rank_devices import check_devices
from aslora_silo.retry import CoordinatorUnreachableError

silo_app = typer.Typer(help="Run a silo agent that trains with DP on local data.", no_args_is_help=True)
silo_app.command("check")(silo_check)
FAILED_EXIT_CODE = 1


@silo_app.command("run")
def run(
    config: Annotated[Path, typer.Option(help="The silo's TOML config file (docs/operations.md).")],
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the privacy ledger (keep it for the whole federation!) and spooled files."
        ),
    ] = None,
    insecure: Insecure = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", metavar=FLAG, help="No progress bar or per-round lines (logs only).")
    ] = False,
    task: Annotated[
        TaskName | None,
        typer.Option(
            help="The task this silo trains (default: the config's `task`, else sequence-classification)."
        ),
    ] = None,
    max_runs: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Exit after taking part in (or declining) N runs (default: serve runs until stopped).",
        ),
    ] = None,
    devices: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Train on N devices of this node, one rank each: GPUs with device cuda, gloo processes on "
            "the CPU (default: the config's [training] devices, else 1).",
        ),
    ] = None,
) -> None:
    """Check this silo (as `aslora silo check` does), then take part in the coordinator's runs, one after
    another: check each run's plan against this silo's own rules and budget, then train every task it
    hands out (or decline the run, saying why)."""
    settings = load_silo_config(config, task)
    if devices is not None:
        settings = dataclasses.replace(settings, ranks=dataclasses.replace(settings.ranks, devices=devices))
    # Before the model's fingerprint is read (minutes for a large model): the node lacks the devices.
    check_devices(settings.compute.device, settings.ranks.devices)
    from aslora_silo.agent import SiloAgent
    from aslora_silo.ledger import SiloLedger
    from aslora_silo.preflight import preflight_silo

    quiet_transformers()
    if state_dir is None:
        typer.echo("warning: no --state-dir; the privacy ledger lives in a temporary folder", err=True)
    with tempfile.TemporaryDirectory(prefix="aslora-silo-") as scratch:
        folder = state_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        spent = SiloLedger(folder, settings.privacy).snapshot()
        preflight_silo(settings, insecure=insecure, spent=spent, state_dir=folder)
        try:
            with SiloDisplay(quiet=quiet) as display:
                end = SiloAgent(settings, folder, insecure=insecure, progress=display).run(max_runs)
        except EndpointError as error:
            raise typer.BadParameter(str(error)) from error
        except (SiloError, CoordinatorUnreachableError) as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(FAILED_EXIT_CODE) from error
        except grpc.RpcError as error:
            status = error.code().name if isinstance(error, grpc.Call) else "RPC failed"
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            typer.echo(f"error: the coordinator answered {status}: {details}", err=True)
            raise typer.Exit(FAILED_EXIT_CODE) from error
    if end is None:
        return
    typer.echo(f"silo finished: last run {end.state.value} ({end.reason})")
    if end.state is RunState.FAILED:
        raise typer.Exit(FAILED_EXIT_CODE)
