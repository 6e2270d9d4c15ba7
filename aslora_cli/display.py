"""Terminal output of long runs: a per-round table and a progress bar, quiet off a terminal. Rounds are
numbered from 1 here, as everywhere a person reads them (aslora_core/round_numbers.py)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from aslora_core.results import RoundRecord, RunResult
from aslora_core.round_numbers import round_number

LOG_WIDTH = 1000
"""The console's width off a terminal (a log file, a pipe): wide enough that no table is cut."""


class _ProgressDisplay:
    """A console on stderr and a transient progress bar, shown only on a terminal and never when quiet."""

    def __init__(self, quiet: bool, *columns: ProgressColumn) -> None:
        self.console = Console(stderr=True, quiet=quiet, width=None if sys.stderr.isatty() else LOG_WIDTH)
        self.progress = Progress(
            *columns,
            console=self.console,
            disable=quiet or not sys.stderr.isatty(),
            transient=True,
        )

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.progress.stop()


class RunDisplay(_ProgressDisplay):
    """Shows rounds as they finish; a progress bar of silo trainings when attached to a terminal."""

    def __init__(self, total_rounds: int, silos: int, quiet: bool = False) -> None:
        super().__init__(
            quiet,
            TextColumn("[bold]round {task.fields[round]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self.task = self.progress.add_task("train", total=total_rounds * silos, round=0)

    def silo_done(self, round_index: int, silo_id: str) -> None:
        """Advance the bar by one silo's local training."""
        self.progress.update(self.task, advance=1, round=round_number(round_index))

    def round_done(self, record: RoundRecord) -> None:
        """Print one line per finished round."""
        self.console.print(
            f"round {round_number(record.round):>3}  acc {record.accuracy:.4f}  loss {record.loss:.4f}  "
            f"eps {record.epsilon:.3f}  B-frac {record.b_fraction:.2f}  "
            f"upload {record.upload_bytes / 1e6:.2f} MB  {record.seconds:.1f}s",
            soft_wrap=True,
        )

    def summary(self, result: RunResult) -> None:
        """A closing table of the run."""
        table = Table(title=f"policy {result.policy}" + (f" / score {result.score}" if result.score else ""))
        for column in ("round", "accuracy", "loss", "epsilon", "B fraction", "upload MB"):
            table.add_column(column, justify="right")
        for r in result.rounds:
            table.add_row(
                str(round_number(r.round)),
                f"{r.accuracy:.4f}",
                f"{r.loss:.4f}",
                f"{r.epsilon:.3f}",
                f"{r.b_fraction:.2f}",
                f"{r.upload_bytes / 1e6:.2f}",
            )
        self.console.print(table)


class SiloDisplay(_ProgressDisplay):
    """A silo's local training as it happens: a bar of DP-SGD steps per round on a terminal, and one line
    per trained round with the silo's epsilon; nothing with `quiet`."""

    def __init__(self, quiet: bool = False) -> None:
        super().__init__(
            quiet,
            TextColumn("[bold]round {task.fields[round]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("DP-SGD steps"),
            TimeElapsedColumn(),
        )
        self.task = self.progress.add_task("steps", total=None, round="-", visible=False)

    def round_started(self, round_index: int, steps: int) -> None:
        """Reset the bar for a new round of `steps` steps."""
        self.progress.reset(self.task, total=steps, round=round_number(round_index), visible=True)

    def step_done(self, steps_done: int) -> None:
        """Move the bar to `steps_done`."""
        self.progress.update(self.task, completed=steps_done)

    def round_finished(self, round_index: int, epsilon: float) -> None:
        """One line: the round is trained, and the silo's epsilon so far."""
        self.progress.update(self.task, visible=False)
        self.console.print(f"round {round_number(round_index):>3} trained  eps {epsilon:.3f}")
