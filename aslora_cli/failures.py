"""How the `aslora` program ends on a mistake its user can fix: one short message naming the problem,
one naming the fix, exit status 2, and the traceback only with `aslora --debug`."""

from __future__ import annotations

from typing import Any

import typer

# Typer carries its own copy of Click and names the context type its groups receive nowhere public.
from typer._click.core import Context
from typer.core import TyperGroup

from aslora_core.mistakes import FILE_ERRORS, FILE_FIX, FixableError, file_problem

MISTAKE_EXIT_CODE = 2
"""The status of a usage error (Click's, for a bad option): the same for a bad file or setting."""
DEBUG_PARAMETER = "debug"
"""The root command's parameter that asks for tracebacks."""


def explain(error: BaseException) -> str | None:
    """The two lines printed for `error` when it is the user's mistake; None when it is not."""
    if isinstance(error, FixableError):
        return f"error: {error}\nfix: {error.fix}"
    if isinstance(error, FILE_ERRORS):
        return f"error: {file_problem(error)}\nfix: {FILE_FIX}"
    return None


class MistakeHandlingGroup(TyperGroup):
    """The root command group: a subcommand that fails on the user's mistake ends with `explain`'s lines
    and MISTAKE_EXIT_CODE, unless --debug asks for the traceback."""

    def invoke(self, ctx: Context) -> Any:
        """Run the chosen subcommand, turning the user's mistakes into a message."""
        try:
            return super().invoke(ctx)
        except Exception as error:
            message = explain(error)
            if message is None or ctx.params.get(DEBUG_PARAMETER):
                raise
            typer.echo(message, err=True)
            raise typer.Exit(MISTAKE_EXIT_CODE) from error
