"""The silo-facing handlers of a federation that serves run after run: each call goes to the run being
served; a silo naming a run that is not (any more) served hears how that run ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from aslora_coordinator.errors import FederationError
from aslora_coordinator.orchestrator import Orchestrator
from aslora_coordinator.run_control import WAIT_SLICE_SECONDS
from aslora_coordinator.run_queue import RunQueue
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.messages import (
    Enrollment,
    EvaluationReply,
    NoTaskYet,
    Registration,
    RunDecline,
    RunEnd,
    RunPlan,
    RunState,
    TaskOutcome,
    UploadAnnouncement,
)
from aslora_rpc.secure_aggregation.messages import ShareRelease, UnmaskRequest
from aslora_rpc.secure_aggregation.share_encryption import EncryptedShares
from aslora_rpc.secure_aggregation.signatures import KeyAdvertisement
from aslora_rpc.transfer import SpooledPayload


class RunRouter:
    """Holds the run being served (its orchestrator) and routes every silo call to it."""

    def __init__(
        self, queue: RunQueue, max_wait_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._queue = queue
        self._max_wait = max_wait_seconds
        self._clock = clock
        self._lock = threading.Condition()
        self._active: Orchestrator | None = None

    def activate(self, orchestrator: Orchestrator) -> None:
        """Serve this run's silos from now on."""
        with self._lock:
            self._active = orchestrator
            self._lock.notify_all()

    def deactivate(self) -> None:
        """No run is served until the next `activate`."""
        with self._lock:
            self._active = None
            self._lock.notify_all()

    @property
    def active(self) -> Orchestrator | None:
        """The orchestrator of the run being served, if any."""
        with self._lock:
            return self._active

    def get_run(self, after_run_id: str, wait_seconds: float) -> RunPlan | None:
        """The plan of the run being served, unless it is `after_run_id` or has ended; waits for one up to
        `wait_seconds` (capped); None when there is none by then."""
        give_up = self._clock() + min(max(wait_seconds, 0.0), self._max_wait)
        with self._lock:
            while True:
                active = self._active
                if active is not None and active.plan.run_id != after_run_id and not active.state.ended:
                    return active.plan
                remaining = give_up - self._clock()
                if remaining <= 0:
                    return None
                self._lock.wait(min(remaining, WAIT_SLICE_SECONDS))

    def decline_run(self, decline: RunDecline) -> None:
        """A silo declines a run whose plan it checked; recorded in that run if it is still served."""
        desk = self._serving(decline.run_id).silo_desk
        desk.decline_run(decline.silo_name, decline.reason, decline.epsilon_spent)

    def register(self, registration: Registration) -> Enrollment:
        """Admit a silo into the run being served (the one whose plan it checked)."""
        return self._serving(registration.run_id).silo_desk.register(registration)

    def heartbeat(self, silo_id: str, run_id: str, epsilon_spent: float) -> RunState:
        """Liveness in the silo's run; that run's state when it is not being served."""
        active = self._matching(run_id)
        if active is None:
            return self._queue.get(run_id).state
        return active.silo_desk.heartbeat(silo_id, epsilon_spent)

    def wait_for_task(self, silo_id: str, run_id: str, wait_seconds: float) -> TaskOutcome:
        """The silo's next task in its run; that run's end once it is over; nothing yet while the service
        is between runs or is loading the silo's run again after a restart."""
        active = self._matching(run_id)
        if active is not None:
            return active.silo_desk.wait_for_task(silo_id, wait_seconds)
        entry = self._queue.get(run_id)
        if entry.state.ended:
            return RunEnd(state=entry.state, reason=entry.reason)
        return NoTaskYet(state=entry.state)

    def adapter_for(self, silo_id: str, task_id: str) -> SpooledPayload:
        """The global adapter file of a task of the run being served."""
        return self._current().silo_desk.adapter_for(silo_id, task_id)

    def check_upload(self, announcement: UploadAnnouncement) -> int | None:
        """See SiloDesk.check_upload."""
        return self._current().silo_desk.check_upload(announcement)

    def accept_upload(self, announcement: UploadAnnouncement, payload: SpooledPayload) -> int:
        """See SiloDesk.accept_upload."""
        return self._current().silo_desk.accept_upload(announcement, payload)

    def decline(self, silo_id: str, task_id: str, reason: str, epsilon_spent: float) -> None:
        """A silo refuses its task in the run being served."""
        self._current().silo_desk.decline(silo_id, task_id, reason, epsilon_spent)

    def release_evaluation(self, reply: EvaluationReply) -> None:
        """A silo's answer to its evaluation task in the run being served."""
        self._current().evaluations.release(reply)

    def exchange_keys(
        self, silo_id: str, task_id: str, advertisement: KeyAdvertisement, wait_seconds: float
    ) -> tuple[KeyAdvertisement, ...] | None:
        """See SecureRelay.exchange_keys."""
        return self._current().secure_relay.exchange_keys(silo_id, task_id, advertisement, wait_seconds)

    def exchange_shares(
        self, silo_id: str, task_id: str, sealed: tuple[EncryptedShares, ...], wait_seconds: float
    ) -> tuple[EncryptedShares, ...] | None:
        """See SecureRelay.exchange_shares."""
        return self._current().secure_relay.exchange_shares(silo_id, task_id, sealed, wait_seconds)

    def unmask_request(self, silo_id: str, task_id: str, wait_seconds: float) -> UnmaskRequest | None:
        """See SecureRelay.unmask_request."""
        return self._current().secure_relay.unmask_request(silo_id, task_id, wait_seconds)

    def release_shares(self, release: ShareRelease) -> None:
        """See SecureRelay.release_shares."""
        self._current().secure_relay.release_shares(release)

    def _matching(self, run_id: str) -> Orchestrator | None:
        active = self.active
        return active if active is not None and active.plan.run_id == run_id else None

    def _serving(self, run_id: str) -> Orchestrator:
        active = self._matching(run_id)
        if active is None:
            served = self.active
            now = "no run" if served is None else f"run {served.plan.run_id}"
            raise FederationError(ErrorCode.RUN_CHANGED, f"run {run_id!r} is not being served; {now} is")
        return active

    def _current(self) -> Orchestrator:
        active = self.active
        if active is None:
            raise FederationError(ErrorCode.UNKNOWN_TASK, "no run is being served")
        return active
