"""Options shared by the `aslora coordinator` commands: the output format, the run a command is about, why the
service shuts down."""

from __future__ import annotations

from typing import Annotated

import typer

from aslora_cli.output import (
    OutputOption,
)

Format = OutputOption
ShutdownReason = Annotated[str, typer.Option(help="Why, for the coordinator's log.")]
SHUTDOWN_REASON = "shut down by the operator"
RunOption = Annotated[
    str,
    typer.Option("--run", metavar="ID", help="The run (default: the active run, else the latest)."),
]
