"""The service's lifecycle events (listening, runs started and ended, silos registered, declined or
evicted, rounds opened and closed), kept in memory, bounded, for `aslora coordinator events`."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

EVENT_LOG_CAPACITY = 1000
"""Events kept for late watchers; older ones are dropped (the log on disk has them all)."""


class EventKind(StrEnum):
    """What happened."""

    LISTENING = "listening"
    RUN_STARTED = "run-started"
    RUN_RESUMED = "run-resumed"
    RUN_ENDED = "run-ended"
    SILO_REGISTERED = "silo-registered"
    SILO_DECLINED = "silo-declined"
    SILO_EVICTED = "silo-evicted"
    ROUND_OPENED = "round-opened"
    ROUND_CLOSED = "round-closed"
    SHUTTING_DOWN = "shutting-down"


@dataclass(frozen=True)
class FederationEvent:
    """One lifecycle event: its place in the log, when (seconds since the Unix epoch), which run, what."""

    sequence: int
    time: float
    run_id: str
    kind: EventKind
    message: str


class EventLog:
    """A bounded, thread-safe log of lifecycle events that watchers follow until it is closed."""

    def __init__(self, capacity: int = EVENT_LOG_CAPACITY, clock: Callable[[], float] = time.time) -> None:
        self._events: deque[FederationEvent] = deque(maxlen=capacity)
        self._clock = clock
        self._next = 1
        self._closed = False
        self._lock = threading.Condition()

    def append(self, run_id: str, kind: EventKind, message: str) -> None:
        """Add an event and wake the watchers."""
        with self._lock:
            self._events.append(FederationEvent(self._next, self._clock(), run_id, kind, message))
            self._next += 1
            self._lock.notify_all()

    def close(self) -> None:
        """No further event: every watcher's stream ends once it has read what is kept."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def after(self, sequence: int, timeout: float) -> tuple[list[FederationEvent], bool]:
        """The kept events after `sequence`, waiting up to `timeout` for one when there are none yet; and
        whether the log is closed (no event will follow those returned)."""
        with self._lock:
            self._lock.wait_for(lambda: self._closed or self._newest() > sequence, timeout)
            return [event for event in self._events if event.sequence > sequence], self._closed

    def _newest(self) -> int:
        return self._next - 1
