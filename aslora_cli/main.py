"""The `aslora` command line: one program, one subcommand group per concern.

Every command module is imported here, so none may import torch, transformers, peft or opacus at its top:
the commands that need them import them when they run, and `--help`, `--version` and the operator's
commands start in well under a second (tests/cli/test_light_imports.py)."""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from aslora_cli.certs import certs_app
from aslora_cli.coordinator import coordinator_app
from aslora_cli.failures import MistakeHandlingGroup
from aslora_cli.logs import LogFormat, configure_logging
from aslora_cli.metavars import FLAG
from aslora_cli.report import report
from aslora_cli.silo import silo_app
from aslora_cli.simulate import simulate

DISTRIBUTION = "aslora"
"""The distribution name in pyproject.toml, whose installed version `--version` prints."""

app = typer.Typer(
    name="aslora",
    help="Differentially private federated LoRA fine-tuning with adaptive factor selection (AS-LoRA).",
    no_args_is_help=True,
    add_completion=False,
    cls=MistakeHandlingGroup,
)
app.command(name="simulate")(simulate)
app.command(name="report")(report)
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(silo_app, name="silo")
app.add_typer(certs_app, name="certs")


def _print_version(requested: bool) -> None:
    if requested:
        typer.echo(f"{DISTRIBUTION} {version(DISTRIBUTION)}")
        raise typer.Exit


@app.callback()
def main(
    log_level: Annotated[str, typer.Option(help="Log level: DEBUG, INFO, WARNING, ERROR.")] = "WARNING",
    log_format: Annotated[
        LogFormat, typer.Option(help="Log records as text lines, or as JSON objects one per line.")
    ] = LogFormat.TEXT,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            metavar=FLAG,
            help="Show the traceback of a mistake in a setting, file or address (normally one message).",
        ),
    ] = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            metavar=FLAG,
            is_eager=True,
            callback=_print_version,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """AS-LoRA: DP federated LoRA where each layer trains one factor per round; a mistake in a setting, a
    file or an address ends with a message and its fix, exit status 2."""
    configure_logging(log_level, log_format)
