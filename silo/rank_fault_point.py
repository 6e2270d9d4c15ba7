"""A fault-injection point for the tests of a silo on several devices: a training rank other than the lead
kills itself (SIGKILL) after the first DP-SGD step of a chosen round, as a rank that crashes mid-round would.

Off unless the environment variable ASLORA_RANK_KILL_ROUND names a round index. A test uses this instead
of racing to kill a rank from outside, which a fast machine loses when the round takes less than the
test's polling interval.
"""

from __future__ import annotations

import logging
import os
import signal

from aslora_core.training import StepCallback

LOGGER = logging.getLogger(__name__)
RANK_KILL_ROUND_ENV = "ASLORA_RANK_KILL_ROUND"
KILL_AFTER_STEPS = 1


def fault_point(round_index: int) -> StepCallback | None:
    """A step callback that kills this process after KILL_AFTER_STEPS steps of `round_index`, when the
    environment names that round; None otherwise."""
    wanted = os.environ.get(RANK_KILL_ROUND_ENV)
    if wanted is None or int(wanted) != round_index:
        return None

    def die(steps_done: int) -> None:
        if steps_done >= KILL_AFTER_STEPS:
            LOGGER.warning("rank fault point: round %d, killing this rank", round_index)
            os.kill(os.getpid(), signal.SIGKILL)

    return die
