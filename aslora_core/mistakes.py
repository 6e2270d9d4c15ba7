"""The mark of an error the person running a process can fix: a setting, a file or an address.

The `aslora` program ends on such an error with its message and its `fix`, exit status 2 and no
traceback (aslora_cli/failures.py); other errors are bugs or failures of a run and keep their traceback.
"""

from __future__ import annotations


class FixableError(Exception):
    """An error caused by something the operator or the institution controls; `fix` says what to do."""

    fix: str = "correct the setting or the file named above"
    """What to do about it, in one line (a subclass or an instance may say more precisely)."""


FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
"""The operating system's errors for a file the user named that is missing, of the wrong kind or not
readable: mistakes too, though they are not FixableErrors."""
FILE_FIX = "check the path; a relative path in a config file is relative to that file's folder"


def file_problem(error: OSError) -> str:
    """One line naming what is wrong with the file and which file it is."""
    return f"{error.strerror}: {error.filename}" if error.filename else str(error)
