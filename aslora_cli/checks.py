"""`aslora silo check` and `aslora coordinator check`: a config's preflight checks, one line each, and
exit status 2 when one fails. The checks (and torch, for the fingerprint) are imported when they run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from aslora_cli.admin_connection import Insecure
from aslora_cli.output import OutputFormat, OutputOption, print_json
from aslora_core.config import TaskName
from aslora_core.mistakes import FixableError
from aslora_rpc.preflight import Failed, Outcome, Passed

CHECK_FAILED_EXIT_CODE = 2
"""A failed check is a mistake in a setting or a file, like a bad option."""
MARKS = {"ok": "ok  ", "warning": "warn", "failed": "FAIL"}


def _verdict(outcome: Outcome) -> str:
    if isinstance(outcome, Failed):
        return "failed"
    return "warning" if outcome.warning else "ok"


def report(outcomes: list[Outcome], output_format: OutputFormat) -> None:
    """Print the outcomes; exit with CHECK_FAILED_EXIT_CODE when one failed."""
    if output_format is OutputFormat.JSON:
        print_json([{"verdict": _verdict(outcome), **vars(outcome)} for outcome in outcomes])
    else:
        for outcome in outcomes:
            mark = MARKS[_verdict(outcome)]
            if isinstance(outcome, Passed):
                typer.echo(f"{mark}  {outcome.check:<12} {outcome.detail}")
            else:
                typer.echo(f"{mark}  {outcome.check:<12} {outcome.problem}")
                typer.echo(f"{'':<4}  {'':<12} fix: {outcome.fix}")
    if any(isinstance(outcome, Failed) for outcome in outcomes):
        raise typer.Exit(CHECK_FAILED_EXIT_CODE)


def _config_outcome(error: FixableError) -> list[Outcome]:
    return [Failed("config", str(error), error.fix)]


def silo_check(
    config: Annotated[Path, typer.Option(help="The silo's TOML config file (docs/operations.md).")],
    plan: Annotated[
        Path | None,
        typer.Option(
            help="A run's config file (the coordinator's tables of the run): check its plan against this "
            "silo's privacy settings and forecast what the run costs this silo's budget."
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="The silo's state folder: its privacy ledger counts in the forecast."),
    ] = None,
    insecure: Insecure = False,
    task: Annotated[TaskName | None, typer.Option(help="The task, as `silo run --task` takes it.")] = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Check this silo's config, data, model, TLS files and ports without registering (and with --plan,
    whether its budget pays one round and the whole run); exit status 2 when a check fails."""
    from aslora_coordinator.config_loader import load_run_file
    from aslora_core.privacy import PrivacyAccountant
    from aslora_silo.config import load_silo_config
    from aslora_silo.ledger import SiloLedger
    from aslora_silo.preflight import PlannedRun, check_silo

    try:
        settings = load_silo_config(config, task)
        planned = None
        if plan is not None:
            run = load_run_file(plan)
            planned = PlannedRun(run.task, run.label_names, run.federation, run.training, run.privacy)
    except FixableError as error:
        report(_config_outcome(error), output_format)
        return
    spent = (
        SiloLedger(state_dir, settings.privacy).snapshot()
        if state_dir is not None
        else PrivacyAccountant(settings.privacy.accountant)
    )
    with tempfile.TemporaryDirectory(prefix="aslora-silo-check-") as scratch:
        folder = state_dir if state_dir is not None else Path(scratch)
        checks = check_silo(settings, insecure=insecure, spent=spent, state_dir=folder, plan=planned)
    report(checks.outcomes, output_format)


def coordinator_check(
    config: Annotated[Path, typer.Option(help="The coordinator's TOML config file (docs/operations.md).")],
    insecure: Insecure = False,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Check the coordinator's config, model, evaluation data, TLS files and ports without serving; exit
    status 2 when a check fails."""
    from aslora_coordinator.config_loader import load_coordinator_config
    from aslora_coordinator.preflight import check_coordinator

    try:
        settings = load_coordinator_config(config)
    except FixableError as error:
        report(_config_outcome(error), output_format)
        return
    report(check_coordinator(settings, insecure=insecure), output_format)
