"""The round state machine's shared state: registrations, tasks, uploads and run control, under one lock.

The gRPC servicers call the silo-facing and admin methods from many threads; the round driver
(round_driver.py) moves the run forward from its own thread. Every method takes the one lock; the slow
parts (planning a silo's sigma, decoding an update) happen outside it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from aslora_coordinator.config import CoordinatorConfig
from aslora_coordinator.errors import ErrorCode, FederationError
from aslora_coordinator.ledger import PrivacyLedger
from aslora_coordinator.metrics import CoordinatorMetrics
from aslora_coordinator.registry import SiloRecord, SiloRegistry
from aslora_coordinator.round_state import OpenRound, ReceivedUpdate
from aslora_coordinator.update_validation import validate_update
from aslora_core.factors import AdapterState
from aslora_core.payload_files import update_from_file
from aslora_core.privacy.planning import expected_sample_rate, plan_noise_multipliers
from aslora_core.serialization import SerializationError
from aslora_core.training.statistics import published_noise
from aslora_rpc.messages import (
    Enrollment,
    NoTaskYet,
    Registration,
    RunEnd,
    RunPlan,
    RunState,
    Task,
    TaskOutcome,
    UploadAnnouncement,
)
from aslora_rpc.protocol import PROTOCOL_VERSION, is_compatible
from aslora_rpc.transfer import SpooledPayload

LOGGER = logging.getLogger(__name__)
SILO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
"""Silo names become file names and metric labels: a conservative alphabet."""
MAX_REASON_CHARS = 500
"""A silo's decline reason is its own text: kept (and shown to operators) up to this length."""
WAIT_SLICE_SECONDS = 1.0
"""Waits re-check time-based conditions (deadlines, timeouts) at least this often."""


class Orchestrator:
    """Registrations, the open round, the ledger and the run state of one run."""

    def __init__(
        self,
        config: CoordinatorConfig,
        plan: RunPlan,
        initial_state: AdapterState,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.plan = plan
        self.clock = clock
        self.registry = SiloRegistry(clock, config.rounds.heartbeat_timeout_seconds)
        self.ledger = PrivacyLedger(config.privacy, config.privacy_budget)
        self.lock = threading.Condition()
        self.started_at = clock()
        self.state = RunState.WAITING_FOR_SILOS
        self.reason = ""
        self.paused = False
        self.stop_reason: str | None = None
        self.open_round: OpenRound | None = None
        self.closed_tasks: dict[str, int] = {}
        self.global_state = initial_state
        self.rounds_completed = 0
        self.latest_evaluation: tuple[float, float] | None = None
        self._total_steps = config.federation.rounds * config.training.local_steps
        self._planned_sigmas: dict[float, float] = {}
        """The sigma planned for each sample rate q (restored silos bring theirs from the checkpoint)."""
        self.metrics = CoordinatorMetrics.watching(self)

    # ---- silo-facing ------------------------------------------------------------------------------------

    def register(self, registration: Registration) -> Enrollment:
        """Admit a silo whose protocol version and base model match; plan its sigma for its own q."""
        if not is_compatible(registration.protocol_version):
            raise FederationError(
                ErrorCode.PROTOCOL_MISMATCH,
                f"the silo speaks version {registration.protocol_version}, "
                f"this coordinator {PROTOCOL_VERSION}",
            )
        if not SILO_NAME.fullmatch(registration.silo_name):
            raise FederationError(ErrorCode.INVALID_REGISTRATION, "silo name must match [A-Za-z0-9._-]{1,63}")
        if registration.dataset_size < 1:
            raise FederationError(ErrorCode.INVALID_REGISTRATION, "dataset size must be at least 1")
        if registration.base_model_fingerprint != self.plan.base_model_fingerprint:
            raise FederationError(
                ErrorCode.FINGERPRINT_MISMATCH,
                f"silo {registration.base_model_fingerprint[:12]}..., "
                f"coordinator {self.plan.base_model_fingerprint[:12]}...",
            )
        rate = expected_sample_rate(self.config.training.batch_size, registration.dataset_size)
        with self.lock:
            sigma = self._planned_sigmas.get(rate)
        if sigma is None:
            # Calibrating sigma to a target epsilon takes a while: planned once per q (it depends on q only),
            # so that silos registering again after a coordinator restart are admitted at once.
            sigma = plan_noise_multipliers(self.config.privacy, self._total_steps, {"silo": rate})["silo"]
        with self.lock:
            self._planned_sigmas[rate] = sigma
            self._refuse_if_ended()
            self.registry.register(registration.silo_name, registration.dataset_size, rate, sigma)
            self.lock.notify_all()
        return Enrollment(protocol_version=PROTOCOL_VERSION, silo_id=registration.silo_name, plan=self.plan)

    def remember_sigma(self, sample_rate: float, noise_multiplier: float) -> None:
        """A sigma already planned for `sample_rate` (from a checkpoint); the caller holds the lock."""
        self._planned_sigmas[sample_rate] = noise_multiplier

    def heartbeat(self, silo_id: str, epsilon_spent: float) -> RunState:
        """Note that the silo is alive, and its own epsilon."""
        with self.lock:
            record = self.registry.touch(silo_id)
            self._note_epsilon(record, epsilon_spent)
            return self.state

    def wait_for_task(self, silo_id: str, wait_seconds: float) -> TaskOutcome:
        """The silo's task in the open round, the run's end, or nothing within the wait."""
        give_up = self.clock() + min(max(wait_seconds, 0.0), self.config.server.max_wait_seconds)
        with self.lock:
            self.registry.touch(silo_id)
            while True:
                if self.state.ended:
                    return RunEnd(state=self.state, reason=self.reason)
                current = self.open_round
                if current is not None and not current.closed and silo_id in current.pending:
                    return self._deliver(current, silo_id)
                remaining = give_up - self.clock()
                if remaining <= 0:
                    return NoTaskYet(state=self.state)
                self.lock.wait(min(remaining, WAIT_SLICE_SECONDS))

    def _deliver(self, current: OpenRound, silo_id: str) -> Task:
        task = current.tasks[silo_id]
        if silo_id not in current.delivered:
            # Charged when handed out: the silo may train even if its update never arrives.
            self.ledger.charge(silo_id, task.noise_multiplier, task.sample_rate, task.local_steps)
            current.delivered.add(silo_id)
        return replace(task, seconds_to_deadline=max(current.deadline - self.clock(), 0.0))

    def adapter_for(self, silo_id: str, task_id: str) -> SpooledPayload:
        """The global adapter file of the silo's task."""
        with self.lock:
            return self._task_round(silo_id, task_id).adapter

    def check_upload(self, announcement: UploadAnnouncement) -> int | None:
        """Refuse an upload before its first chunk: unknown or closed round, duplicate, or too large.

        A re-send of the very update already received (same size and SHA-256: a silo whose first send's
        answer was lost) is acknowledged with its round index and not read again; None: go on and read it.
        """
        with self.lock:
            self.registry.touch(announcement.silo_id)
            current = self._task_round(announcement.silo_id, announcement.task_id)
            if announcement.silo_id not in current.delivered:
                # A restarted coordinator reopens the round with the same task ids; a silo that trained
                # it before the restart must take it again (and so be charged) before its update counts.
                raise FederationError(ErrorCode.NOT_HANDED_OUT, "the task was not handed to this silo")
            already = current.received.get(announcement.silo_id)
            if already is not None:
                if (already.sha256, already.payload_bytes) == (
                    announcement.update.sha256,
                    announcement.update.size_bytes,
                ):
                    LOGGER.info(
                        "round %d: %s re-sent its update; already received",
                        current.index,
                        announcement.silo_id,
                    )
                    return current.index
                raise FederationError(ErrorCode.DUPLICATE_UPDATE, f"round {current.index}")
        if announcement.update.size_bytes > self.config.transport.max_payload_bytes:
            raise FederationError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"{announcement.update.size_bytes} bytes, cap {self.config.transport.max_payload_bytes}",
            )
        return None

    def accept_upload(self, announcement: UploadAnnouncement, payload: SpooledPayload) -> int:
        """Decode, validate and keep a received update; return its round index. How its statistics were
        noised is computed from what was published (the task's sigma, the run's clip norm, batch and
        steps, the silo's registered size), never read from the silo."""
        with self.lock:
            current = self._task_round(announcement.silo_id, announcement.task_id)
            noise = published_noise(
                current.tasks[announcement.silo_id].noise_multiplier,
                self.config.privacy,
                self.config.training,
                self.registry.get(announcement.silo_id).dataset_size,
                has_head=bool(self.global_state.head),
            )
        try:
            update = update_from_file(payload.path, noise)
        except SerializationError as error:
            raise FederationError(ErrorCode.INVALID_UPDATE, str(error)) from error
        with self.lock:
            current = self._task_round(announcement.silo_id, announcement.task_id)
            if announcement.silo_id in current.received:
                raise FederationError(ErrorCode.DUPLICATE_UPDATE, f"round {current.index}")
            record = self.registry.get(announcement.silo_id)
            ratio = validate_update(
                update,
                record.silo_id,
                float(record.dataset_size),
                current.selection,
                self.global_state,
                global_norm=current.global_norm,
                max_norm_ratio=self.config.security.max_update_norm_ratio,
            )
            LOGGER.debug("update of %s: ||update - global|| / ||global|| = %.4f", record.silo_id, ratio)
            current.received[record.silo_id] = ReceivedUpdate(
                update, payload.info.size_bytes, payload.info.sha256
            )
            self._note_epsilon(record, announcement.epsilon_spent)
            self.lock.notify_all()
            return current.index

    def decline(self, silo_id: str, task_id: str, reason: str, epsilon_spent: float) -> None:
        """The silo refuses its task (e.g. its own budget); it gets no further task in this run."""
        with self.lock:
            current = self._task_round(silo_id, task_id)
            record = self.registry.get(silo_id)
            current.declined.add(silo_id)
            record.declined_reason = (reason or "declined")[:MAX_REASON_CHARS]
            self._note_epsilon(record, epsilon_spent)
            self.lock.notify_all()

    def _task_round(self, silo_id: str, task_id: str) -> OpenRound:
        self.registry.get(silo_id)
        current = self.open_round
        if current is None or current.task_id != task_id:
            if task_id in self.closed_tasks:
                raise FederationError(ErrorCode.ROUND_CLOSED, f"round {self.closed_tasks[task_id]}")
            raise FederationError(ErrorCode.UNKNOWN_TASK, task_id)
        if silo_id not in current.tasks:
            raise FederationError(ErrorCode.NOT_ASSIGNED, task_id)
        return current

    def _note_epsilon(self, record: SiloRecord, epsilon: float) -> None:
        record.epsilon_reported = max(record.epsilon_reported, epsilon)
        self.ledger.report(record.silo_id, record.epsilon_reported)

    def _refuse_if_ended(self) -> None:
        if self.state.ended:
            raise FederationError(ErrorCode.RUN_ENDED, f"{self.state.value}: {self.reason}")

    # ---- run control ------------------------------------------------------------------------------------

    def end(self, state: RunState, reason: str) -> None:
        """End the run (idempotent: the first end wins) and wake every waiter."""
        with self.lock:
            if not self.state.ended:
                self.state, self.reason = state, reason
            self.lock.notify_all()

    def pause(self) -> RunState:
        """Let the open round finish, then open no new one until `resume`."""
        with self.lock:
            self.paused = True
            if self.open_round is None and not self.state.ended:
                self.state = RunState.PAUSED
            self.lock.notify_all()
            return self.state

    def resume(self) -> RunState:
        """Undo `pause`."""
        with self.lock:
            self.paused = False
            if self.state is RunState.PAUSED:
                self.state = RunState.RUNNING
            self.lock.notify_all()
            return self.state

    def stop(self, reason: str) -> None:
        """Ask the round driver to end the run now; the open round is abandoned."""
        with self.lock:
            self.stop_reason = reason or "stopped by the operator"
            self.lock.notify_all()

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Block until the run has ended (or the timeout passes); whether it has."""
        with self.lock:
            return self.lock.wait_for(lambda: self.state.ended, timeout)

    def snapshot_global_state(self) -> AdapterState:
        """The current global adapter (aggregation never changes a published state in place)."""
        with self.lock:
            return self.global_state
