"""The round tasks on offer in a run: the open round, the task ids of closed ones, the secure round whose
survivors are asked for shares, and the lookup of a silo's task in them."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aslora_coordinator.errors import FederationError
from aslora_coordinator.registry import SiloRegistry
from aslora_coordinator.round_state import OpenRound
from aslora_coordinator.secure_round import SecureRound
from aslora_core.round_numbers import round_number
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.messages import Task

LOGGER = logging.getLogger(__name__)


class TaskBoard:
    """The one writer of which round is open or being unmasked; not thread-safe on its own (every caller
    holds the run's lock)."""

    def __init__(self, registry: SiloRegistry) -> None:
        self._registry = registry
        self._open_round: OpenRound | None = None
        self._unmasking: OpenRound | None = None
        """A secure round whose uploads closed and whose survivors are asked for shares."""
        self._closed_tasks: dict[str, int] = {}

    @property
    def open_round(self) -> OpenRound | None:
        """The round attempt in progress, if any."""
        return self._open_round

    @property
    def unmasking(self) -> OpenRound | None:
        """The secure round whose survivors are asked for their shares, if any."""
        return self._unmasking

    def post(self, current: OpenRound) -> None:
        """Offer the round's tasks."""
        self._open_round = current

    def close(self, current: OpenRound, now: float) -> None:
        """Close the round: later uploads are late. A secure round with at least its threshold of masked
        updates then asks its survivors for their shares."""
        current.closed = True
        self._closed_tasks[current.task_id] = current.index
        self._open_round = None
        if current.secure is not None and len(current.secure.masked) >= current.secure.context.threshold:
            # Fewer than t survivors: nobody is asked for shares, and nothing is decoded.
            current.secure.open_unmasking(now)
            self._unmasking = current

    def unmasking_closed(self) -> None:
        """The unmasking step is over: no survivor's shares are taken any more."""
        self._unmasking = None

    def task_round(self, silo_id: str, task_id: str) -> OpenRound:
        """The open round holding the registered silo's task `task_id`; FederationError when the task is
        unknown, closed, not the silo's, or no longer waited for."""
        self._registry.get(silo_id)
        current = self._open_round
        if current is None or current.task_id != task_id:
            if task_id in self._closed_tasks:
                raise FederationError(
                    ErrorCode.ROUND_CLOSED, f"round {round_number(self._closed_tasks[task_id])}"
                )
            raise FederationError(ErrorCode.UNKNOWN_TASK, task_id)
        if silo_id not in current.tasks:
            raise FederationError(ErrorCode.NOT_ASSIGNED, task_id)
        if silo_id in current.declined:
            # It declined, was evicted, or registered again with another dataset size (its task's noise
            # and weight were planned for the old one): the round went on without it.
            raise FederationError(
                ErrorCode.ROUND_CLOSED, f"round {round_number(current.index)} no longer waits for {silo_id}"
            )
        return current

    def secure_round(self, silo_id: str, task_id: str) -> tuple[OpenRound, SecureRound]:
        """The open secure round of the silo's task, which it must have been handed."""
        current = self.task_round(silo_id, task_id)
        if current.secure is None:
            raise FederationError(ErrorCode.INVALID_UPDATE, "this round does not run secure aggregation")
        if silo_id not in current.delivered:
            raise FederationError(ErrorCode.NOT_HANDED_OUT, "the task was not handed to this silo")
        return current, current.secure

    def leave_open_round(self, silo_id: str, when: Callable[[Task], bool]) -> None:
        """The open round stops waiting for the silo's task when `when` holds for it (a task planned for
        another dataset size, or an evicted silo's); a charge for a task handed out stays in the ledger."""
        current = self._open_round
        if current is None or silo_id not in current.pending or not when(current.tasks[silo_id]):
            return
        current.declined.add(silo_id)
        LOGGER.info("round %d: no longer waits for %s", round_number(current.index), silo_id)
