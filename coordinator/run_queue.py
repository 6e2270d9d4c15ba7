"""The federation's runs in submission order: the one writer of where each run stands, kept in the store
after every change."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aslora_coordinator.config import RunConfig
from aslora_coordinator.errors import FederationError
from aslora_coordinator.run_entry import RunEntry
from aslora_coordinator.state import FederationStore
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.messages import RunState

RUN_ID_BYTES = 6


class RunQueue:
    """Submitted runs, executed one after another in submission order; thread-safe."""

    def __init__(self, store: FederationStore, clock: Callable[[], float] = time.time) -> None:
        """The queue as the store keeps it (a restarted coordinator keeps its queue)."""
        self._store = store
        self._clock = clock
        self._lock = threading.Condition()
        self._runs = store.load_runs()

    def submit(self, source: str, settings: dict[str, Any], config: RunConfig) -> tuple[RunEntry, int]:
        """Queue a run whose settings were read into `config`; its entry, and how many runs are ahead."""
        with self._lock:
            entry = RunEntry(
                run_id=self._new_id(),
                source=source,
                settings=settings,
                policy=config.federation.policy,
                task=config.task.value,
                rounds_total=config.federation.rounds,
                submitted_at=self._clock(),
            )
            ahead = sum(not run.state.ended for run in self._runs)
            self._runs.append(entry)
            self._save()
            self._lock.notify_all()
            return entry, ahead

    def _new_id(self) -> str:
        known = {run.run_id for run in self._runs}
        while True:
            run_id = secrets.token_hex(RUN_ID_BYTES)
            if run_id not in known:
                return run_id

    def entries(self) -> list[RunEntry]:
        """Every run, in submission order."""
        with self._lock:
            return list(self._runs)

    def get(self, run_id: str) -> RunEntry:
        """The run of this id; FederationError(UNKNOWN_RUN) when none was submitted."""
        with self._lock:
            return self._runs[self._index(run_id)]

    def active_or_latest(self) -> RunEntry | None:
        """The run being served (the first not ended that has started), else the latest ended one."""
        with self._lock:
            for run in self._runs:
                if not run.state.ended and run.started_at is not None:
                    return run
            ended = [run for run in self._runs if run.state.ended]
            return ended[-1] if ended else None

    def next_to_serve(self, timeout: float | None) -> RunEntry | None:
        """The first run that has not ended (an interrupted active run comes first, being earlier), waiting
        up to `timeout` for a submission; None when there is none."""
        with self._lock:
            self._lock.wait_for(lambda: self._first_open() is not None, timeout)
            return self._first_open()

    def _first_open(self) -> RunEntry | None:
        return next((run for run in self._runs if not run.state.ended), None)

    def started(self, run_id: str) -> RunEntry:
        """The run is being served (again, after a restart: its first start time is kept)."""
        return self._update(
            run_id,
            lambda run: replace(
                run,
                state=RunState.WAITING_FOR_SILOS if run.state is RunState.QUEUED else run.state,
                started_at=run.started_at if run.started_at is not None else self._clock(),
            ),
        )

    def progress(
        self, run_id: str, state: RunState, rounds_completed: int, epsilon_spent: float, wall_seconds: float
    ) -> None:
        """Where an active run stands now (its end is recorded by `ended`)."""
        self._update(
            run_id,
            lambda run: replace(
                run,
                state=run.state if state.ended else state,
                rounds_completed=rounds_completed,
                epsilon_spent=epsilon_spent,
                wall_seconds=wall_seconds,
            ),
        )

    def ended(self, run_id: str, state: RunState, reason: str) -> RunEntry:
        """The run is over: how and why (the first end is kept)."""
        return self._update(
            run_id,
            lambda run: (
                run
                if run.ended_at is not None
                else replace(run, state=state, reason=reason, ended_at=self._clock())
            ),
        )

    def cancel_queued(self, run_id: str, reason: str) -> RunEntry:
        """Cancel a run that has not started (it never will); a started or ended run is returned as it is,
        for the caller to cancel the active run or report that it has ended."""
        with self._lock:
            index = self._index(run_id)
            run = self._runs[index]
            if run.state is RunState.QUEUED:
                run = replace(run, state=RunState.CANCELLED, reason=reason, ended_at=self._clock())
                self._runs[index] = run
                self._save()
                self._lock.notify_all()
            return run

    def _update(self, run_id: str, change: Callable[[RunEntry], RunEntry]) -> RunEntry:
        with self._lock:
            index = self._index(run_id)
            self._runs[index] = change(self._runs[index])
            self._save()
            self._lock.notify_all()
            return self._runs[index]

    def _index(self, run_id: str) -> int:
        for index, run in enumerate(self._runs):
            if run.run_id == run_id:
                return index
        raise FederationError(ErrorCode.UNKNOWN_RUN, run_id)

    def _save(self) -> None:
        self._store.save_runs(self._runs)
