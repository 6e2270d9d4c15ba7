"""`aslora report RESULTS.json... --out DIR`: pictures and a summary table of finished runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aslora_core.reporting import ReportError, read_runs, write_report


def report(
    results: Annotated[
        list[Path],
        typer.Argument(
            help="Results JSON files (`aslora simulate --output`, or a coordinator's results_path).",
            exists=True,
            dir_okay=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the pictures and summary.md into.")],
) -> None:
    """Draw accuracy and loss per round (one line per run), epsilon per round and a layer x round map of
    the factor each layer trained; write a markdown summary table beside them."""
    try:
        written = write_report(read_runs(results), out)
    except ReportError as error:
        raise typer.BadParameter(str(error), param_hint="RESULTS") from error
    for path in written:
        typer.echo(str(path))
