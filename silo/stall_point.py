"""A fault-injection point for the reliability tests: the silo stops itself (SIGSTOP) once it has trained
and charged a chosen round and before it sends the update, as a silo that hangs there would.

Off unless the environment variable ASLORA_SILO_STALL_ROUND names a round index. The process stays stopped
until something sends it SIGCONT; a test uses this instead of racing to stop a silo from outside, which a
fast machine loses when the round's training and upload take less than the test's polling interval.
"""

from __future__ import annotations

import logging
import os
import signal

LOGGER = logging.getLogger(__name__)
STALL_ROUND_ENV = "ASLORA_SILO_STALL_ROUND"


def maybe_stall(round_index: int) -> None:
    """Stop this process now when the environment names `round_index`."""
    wanted = os.environ.get(STALL_ROUND_ENV)
    if wanted is None or int(wanted) != round_index:
        return
    LOGGER.warning("stall point: round %d trained and charged; stopping until SIGCONT", round_index)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGSTOP)
