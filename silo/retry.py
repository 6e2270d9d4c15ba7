"""Retry of transient gRPC failures with exponential backoff and full jitter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import grpc

LOGGER = logging.getLogger(__name__)
TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
BACKOFF_FACTOR = 2.0
T = TypeVar("T")


class CoordinatorUnreachableError(RuntimeError):
    """The coordinator could not be reached for longer than the configured patience."""


class Backoff:
    """Exponential backoff with full jitter (sleep uniformly in [0, current cap]), from its own RNG."""

    def __init__(
        self,
        initial_seconds: float,
        max_seconds: float,
        give_up_after_seconds: float | None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial_seconds = initial_seconds
        self.max_seconds = max_seconds
        self.give_up_after_seconds = give_up_after_seconds
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()  # jitter only; never used for DP noise

    def call(self, what: str, operation: Callable[[], T]) -> T:
        """Run `operation`, retrying UNAVAILABLE and DEADLINE_EXCEEDED; other errors propagate."""
        started = self._clock()
        cap = self.initial_seconds
        while True:
            try:
                return operation()
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                if code not in TRANSIENT_CODES:
                    raise
                waited = self._clock() - started
                if self.give_up_after_seconds is not None and waited >= self.give_up_after_seconds:
                    raise CoordinatorUnreachableError(
                        f"{what}: coordinator unreachable for {waited:.0f}s"
                    ) from error
                delay = self._random.uniform(0.0, cap)
                LOGGER.info("%s: %s; retrying in %.2fs", what, code.name if code else "error", delay)
                self._sleep(delay)
                cap = min(cap * BACKOFF_FACTOR, self.max_seconds)
