"""A run's lifecycle (waiting, running, paused, ended), an operator's stop, a service suspension, and the
one lock every part of the run holds while it reads or changes the run."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection

from aslora_coordinator.config import RoundSettings
from aslora_coordinator.errors import FederationError
from aslora_coordinator.registry import SiloRecord
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.messages import RunState

WAIT_SLICE_SECONDS = 1.0
"""Waits re-check time-based conditions (deadlines, timeouts) at least this often."""


class RunControl:
    """The one writer of where the run stands; its lock (a re-entrant condition) guards the whole run.

    Every method takes the lock; the parts of the run call the lock-held ones (`refuse_if_ended`,
    `wait_until`) inside their own hold of it."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.lock = threading.Condition()
        """The run's one lock: every part of the run holds it while it reads or changes the run."""
        self.clock = clock
        self._started_at = clock()
        self._state = RunState.WAITING_FOR_SILOS
        self._reason = ""
        self._paused = False
        self._stop_reason: str | None = None
        self._stop_state = RunState.STOPPED
        self._suspended = False

    @property
    def state(self) -> RunState:
        """Where the run stands."""
        with self.lock:
            return self._state

    @property
    def reason(self) -> str:
        """Why the run ended (empty while it goes on)."""
        with self.lock:
            return self._reason

    @property
    def stop_requested(self) -> bool:
        """Whether an operator asked to stop the run."""
        with self.lock:
            return self._stop_reason is not None

    @property
    def suspended(self) -> bool:
        """Whether the service is shutting down with this run unfinished (it resumes on a restart)."""
        with self.lock:
            return self._suspended

    @property
    def interrupted(self) -> bool:
        """Whether a wait for silos must give up: a stop was asked, the run ended or is suspended."""
        with self.lock:
            return self._stop_reason is not None or self._state.ended or self._suspended

    def refuse_if_ended(self) -> None:
        """FederationError (RUN_ENDED) once the run has ended."""
        with self.lock:
            if self._state.ended:
                raise FederationError(ErrorCode.RUN_ENDED, f"{self._state.value}: {self._reason}")

    def wait_until(self, give_up: float) -> bool:
        """Wait on the lock until woken or a slice passes; False once `give_up` has passed or the run is
        no longer going on."""
        with self.lock:
            remaining = give_up - self.clock()
            if remaining <= 0 or self._state.ended or self._suspended:
                return False
            self.lock.wait(min(remaining, WAIT_SLICE_SECONDS))
            return True

    def end(self, state: RunState, reason: str) -> None:
        """End the run (idempotent: the first end wins) and wake every waiter."""
        with self.lock:
            if not self._state.ended:
                self._state, self._reason = state, reason
            self.lock.notify_all()

    def pause(self, round_open: bool) -> RunState:
        """Let the open round (`round_open`: whether there is one) finish, then open no new one until
        `resume`."""
        with self.lock:
            self._paused = True
            if not round_open and not self._state.ended:
                self._state = RunState.PAUSED
            self.lock.notify_all()
            return self._state

    def round_closed(self) -> None:
        """A round closed: a pause asked during it now holds the run."""
        with self.lock:
            if self._paused:
                self._state = RunState.PAUSED

    def resume(self) -> RunState:
        """Undo `pause`."""
        with self.lock:
            self._paused = False
            if self._state is RunState.PAUSED:
                self._state = RunState.RUNNING
            self.lock.notify_all()
            return self._state

    def stop(self, reason: str, state: RunState = RunState.STOPPED) -> None:
        """Ask the round driver to end the run now, as `state` (stopped, or cancelled by the operator); the
        open round is abandoned. Before the driver has started, the run ends at once."""
        with self.lock:
            self._stop_reason = reason or f"{state.value} by the operator"
            self._stop_state = state
            self.lock.notify_all()

    def suspend(self) -> None:
        """The service shuts down with the run unfinished: the round driver stops without ending the run
        (an open round is abandoned; its checkpoint stays), and silos are told nothing but to wait: they
        find the run again when the service restarts and resumes it."""
        with self.lock:
            self._suspended = True
            self.lock.notify_all()

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Block until the run has ended (or the timeout passes); whether it has."""
        with self.lock:
            return self.lock.wait_for(lambda: self._state.ended, timeout)

    def wait_stop_requested(self, timeout: float | None) -> bool:
        """Block until an operator asks to stop (or the timeout passes); whether one did."""
        with self.lock:
            return self.lock.wait_for(lambda: self._stop_reason is not None, timeout)

    def end_if_stop_requested(self) -> bool:
        """End the run as stopped if an operator asked to; whether it did."""
        with self.lock:
            if self._stop_reason is None:
                return False
            self.end(self._stop_state, self._stop_reason)
            return True

    def wait_for_participants(
        self,
        available: Callable[[], list[SiloRecord]],
        rounds: RoundSettings,
        *,
        first_round: bool,
        awaited: Collection[str] = (),
        awaited_until: float = 0.0,
    ) -> list[SiloRecord] | None:
        """Block until a round may open (not paused, `rounds.min_silos` available and, until the clock
        reads `awaited_until`, every silo of `awaited` too): the available silos' records; None when the
        run ends (stopped, or, before the `first_round`, too few registered in time) or is suspended."""
        with self.lock:
            while True:
                if self._stop_reason is not None:
                    self.end(self._stop_state, self._stop_reason)
                if self._state.ended or self._suspended:
                    return None
                if self._paused:
                    self._state = RunState.PAUSED
                else:
                    silos = available()
                    missing = set(awaited) - {silo.silo_id for silo in silos}
                    if len(silos) >= rounds.min_silos and (not missing or self.clock() >= awaited_until):
                        self._state = RunState.RUNNING
                        return silos
                    timeout = rounds.registration_timeout_seconds
                    waited = self.clock() - self._started_at
                    if timeout is not None and first_round and waited > timeout:
                        self.end(RunState.FAILED, f"fewer than min_silos registered in {timeout:g}s")
                        return None
                    self._state = RunState.WAITING_FOR_SILOS
                self.lock.wait(WAIT_SLICE_SECONDS)
