"""Named fault-injection points for the reliability tests: the coordinator process exits at once there.

Off unless the environment variable ASLORA_CRASH_POINT names a point; ASLORA_CRASH_ROUND (optional)
limits it to one round index. The exit is `os._exit`: no cleanup, nothing closed or saved (only the
process's stdout and stderr are flushed, for the log), as a power cut or SIGKILL would leave things.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum

CRASH_POINT_ENV = "ASLORA_CRASH_POINT"
CRASH_ROUND_ENV = "ASLORA_CRASH_ROUND"
CRASH_EXIT_CODE = 86
"""The exit status of a crash point, distinct from the CLI's own exit codes."""


class CrashPoint(StrEnum):
    """Where the coordinator can be made to crash."""

    BEFORE_AGGREGATION = "before-aggregation"
    AFTER_AGGREGATION = "after-aggregation"
    AFTER_CHECKPOINT = "after-checkpoint"
    DURING_DOWNLOAD = "during-download"
    DURING_UPLOAD = "during-upload"
    DURING_UNMASKING = "during-unmasking"
    """A secure round's survivors released their shares; nothing is decoded yet."""


def maybe_crash(point: CrashPoint, round_index: int | None = None) -> None:
    """Exit the process now when the environment asks for `point` (and for this round, if it names one;
    a point reached without a known round index matches any round)."""
    if os.environ.get(CRASH_POINT_ENV) != point.value:
        return
    wanted = os.environ.get(CRASH_ROUND_ENV)
    if wanted is not None and round_index is not None and int(wanted) != round_index:
        return
    # Only the process's own output is flushed (for the test's log); no state is written or closed.
    sys.stdout.flush()
    sys.stderr.write(f"crash point {point.value} (round {round_index}): exiting now\n")
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)
