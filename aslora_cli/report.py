"""`aslora report RESULTS.json... --out DIR`: pictures and a summary table of finished runs (the plotting
code, and with it matplotlib, is imported when the command runs)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

LOGGER = logging.getLogger(__name__)


def report(
    results: Annotated[
        list[Path],
        typer.Argument(
            metavar="RESULTS",
            help="Results JSON files (`aslora simulate --output`, or a coordinator's results_path).",
            exists=True,
            dir_okay=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the pictures and summary.md into.")],
) -> None:
    """Draw finished runs: accuracy, loss and epsilon per round, and the factor each layer trained.

    Writes accuracy_loss.png (one line per run), epsilon.png, selection.png (a layer x round map per run),
    for AS-LoRA runs scores.png and curvature.png (layer x round maps of the score margin and of the
    curvature estimate), and summary.md, a markdown table of the runs' final figures, into --out.
    """
    from aslora_core.reporting import ReportError, read_runs, write_report

    try:
        written = write_report(read_runs(results), out)
    except ReportError as error:
        raise typer.BadParameter(str(error), param_hint="RESULTS") from error
    LOGGER.info("report of %d run(s) written to %s", len(results), out)
    for path in written:
        typer.echo(str(path))
