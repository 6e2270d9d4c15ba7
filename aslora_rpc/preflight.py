"""The outcome of one preflight check, shared by `aslora silo check` and `aslora coordinator check`: a
check passes with what it found, or fails with the problem and its fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aslora_core.mistakes import FILE_ERRORS, FILE_FIX, FixableError, file_problem


@dataclass(frozen=True)
class Passed:
    """A check that passed: what it found, and whether that deserves the operator's attention."""

    check: str
    detail: str
    warning: bool = False


@dataclass(frozen=True)
class Failed:
    """A check that failed: the problem, and how to fix it."""

    check: str
    problem: str
    fix: str


Outcome = Passed | Failed


class PreflightError(FixableError):
    """A check that failed, raised by a process that checks before it starts (e.g. `aslora silo run`)."""

    def __init__(self, failed: Failed) -> None:
        """The error for `failed`; its message names the check and the problem."""
        super().__init__(f"{failed.check}: {failed.problem}")
        self.failed = failed
        self.fix = failed.fix


def attempt(check: str, run: Callable[[], Passed]) -> Outcome:
    """`run`'s outcome, or the failure it raised when that is the user's mistake (other errors propagate:
    they are bugs, not findings)."""
    try:
        return run()
    except PreflightError as error:
        return error.failed
    except FixableError as error:
        return Failed(check, str(error), error.fix)
    except FILE_ERRORS as error:
        return Failed(check, file_problem(error), FILE_FIX)


def raise_first_failure(outcomes: list[Outcome]) -> None:
    """Raise PreflightError for the first failed outcome, if any."""
    for outcome in outcomes:
        if isinstance(outcome, Failed):
            raise PreflightError(outcome)
