"""The silo-facing calls of one run: registrations, declines, heartbeats, handing out round tasks, and the
updates that come back (a secure round's key and share steps are secure_relay.py's)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import replace

from aslora_coordinator.config import RunConfig, ServiceConfig
from aslora_coordinator.errors import FederationError
from aslora_coordinator.event_log import EventKind
from aslora_coordinator.ledger import PrivacyLedger
from aslora_coordinator.registry import RUN_DECLINED, SiloRecord, SiloRegistry
from aslora_coordinator.round_state import OpenRound, ReceivedUpdate
from aslora_coordinator.run_control import WAIT_SLICE_SECONDS, RunControl
from aslora_coordinator.sigma_plans import SigmaPlans
from aslora_coordinator.silo_evaluations import SiloEvaluations
from aslora_coordinator.task_board import TaskBoard
from aslora_coordinator.update_validation import validate_update
from aslora_core.factors import AdapterState, StatisticsNoise
from aslora_core.payload_files import update_from_file
from aslora_core.privacy.planning import expected_sample_rate
from aslora_core.round_numbers import round_number
from aslora_core.serialization import SerializationError
from aslora_core.training.statistics import published_noise
from aslora_rpc.error_codes import ErrorCode
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
from aslora_rpc.secure_aggregation_wire import ring_from_bytes
from aslora_rpc.transfer import SpooledPayload

LOGGER = logging.getLogger(__name__)
SILO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
"""Silo names become file names and metric labels: a conservative alphabet."""
MAX_REASON_CHARS = 500
"""A silo's decline reason is its own text: kept (and shown to operators) up to this length."""
Announce = Callable[[EventKind, str], None]


def task_noise(config: RunConfig, task: Task, silo: SiloRecord, state: AdapterState) -> StatisticsNoise:
    """How a silo's released statistics were noised in its task, from what was published (the task's
    sigma, the run's clip norm, batch and steps, the silo's registered size), never read from the silo."""
    return published_noise(
        task.noise_multiplier, config.privacy, config.training, silo.dataset_size, has_head=bool(state.head)
    )


class SiloDesk:
    """Answers a run's silos; every method takes the run's lock, the slow parts (planning a silo's
    sigma, decoding an update) happen outside it."""

    def __init__(
        self,
        config: RunConfig,
        service: ServiceConfig,
        plan: RunPlan,
        *,
        control: RunControl,
        registry: SiloRegistry,
        ledger: PrivacyLedger,
        board: TaskBoard,
        evaluations: SiloEvaluations,
        sigmas: SigmaPlans,
        global_state: Callable[[], AdapterState],
        announce: Announce,
    ) -> None:
        """`global_state`: the run's current global adapter (updates are validated against it)."""
        self._config = config
        self._service = service
        self._plan = plan
        self._control = control
        self._lock = control.lock
        self._registry = registry
        self._ledger = ledger
        self._board = board
        self._evaluations = evaluations
        self._sigmas = sigmas
        self._global_state = global_state
        self._announce = announce

    def register(self, registration: Registration) -> Enrollment:
        """Admit a silo whose protocol version and base model match; plan its sigma for its own q."""
        self._check_registration(registration)
        rate = expected_sample_rate(self._config.training.batch_size, registration.dataset_size)
        sigma = self._sigmas.sigma_for(rate)
        with self._lock:
            self._control.refuse_if_ended()
            self._registry.register(registration.silo_name, registration.dataset_size, rate, sigma)
            self._board.leave_open_round(registration.silo_name, lambda task: task.sample_rate != rate)
            self._lock.notify_all()
        self._announce(
            EventKind.SILO_REGISTERED,
            f"silo {registration.silo_name} registered with {registration.dataset_size} records "
            f"(q {rate:.4g}, sigma {sigma:.4g})",
        )
        return Enrollment(protocol_version=PROTOCOL_VERSION, silo_id=registration.silo_name, plan=self._plan)

    def _check_registration(self, registration: Registration) -> None:
        plan = self._plan
        if not is_compatible(registration.protocol_version):
            raise FederationError(
                ErrorCode.PROTOCOL_MISMATCH,
                f"the silo speaks version {registration.protocol_version}, "
                f"this coordinator {PROTOCOL_VERSION}",
            )
        _check_silo_name(registration.silo_name)
        if registration.run_id != plan.run_id:
            raise FederationError(
                ErrorCode.RUN_CHANGED, f"the silo checked run {registration.run_id!r}; now {plan.run_id}"
            )
        if registration.dataset_size < 1:
            raise FederationError(ErrorCode.INVALID_REGISTRATION, "dataset size must be at least 1")
        if registration.base_model_fingerprint != plan.base_model_fingerprint:
            raise FederationError(
                ErrorCode.FINGERPRINT_MISMATCH,
                f"silo {registration.base_model_fingerprint[:12]}..., "
                f"coordinator {plan.base_model_fingerprint[:12]}...",
            )

    def evict(self, silo_id: str, reason: str) -> None:
        """An operator takes a silo out of the run: it gets no further task, and the open round no longer
        waits for it; its ledger line stays."""
        text = (reason or "evicted by the operator")[:MAX_REASON_CHARS]
        with self._lock:
            self._control.refuse_if_ended()
            self._registry.evict(silo_id, text)
            self._board.leave_open_round(silo_id, lambda task: True)
            self._evaluations.excuse(silo_id, text)
            self._lock.notify_all()
        self._announce(EventKind.SILO_EVICTED, f"silo {silo_id} evicted: {text}")

    def decline_run(self, silo_name: str, reason: str, epsilon_spent: float) -> None:
        """The silo checked this run's plan and will not take part: it is not counted, and the operator
        sees its reason among the run's silos."""
        _check_silo_name(silo_name)
        text = f"{RUN_DECLINED}: {reason or 'no reason given'}"[:MAX_REASON_CHARS]
        with self._lock:
            record = self._registry.record_run_decline(silo_name, text)
            self._ledger.note_reported(record, epsilon_spent)
            self._lock.notify_all()
        self._announce(EventKind.SILO_DECLINED, f"silo {silo_name} {text}")

    def heartbeat(self, silo_id: str, epsilon_spent: float) -> RunState:
        """Note that the silo is alive, and its own epsilon."""
        with self._lock:
            record = self._registry.touch(silo_id)
            self._ledger.note_reported(record, epsilon_spent)
            return self._control.state

    def wait_for_task(self, silo_id: str, wait_seconds: float) -> TaskOutcome:
        """The silo's task in the open round, the run's end, or nothing within the wait."""
        control = self._control
        give_up = control.clock() + min(max(wait_seconds, 0.0), self._service.server.max_wait_seconds)
        with self._lock:
            self._registry.touch(silo_id)
            while True:
                if control.state.ended:
                    return RunEnd(state=control.state, reason=control.reason)
                if control.suspended:
                    return NoTaskYet(state=control.state)
                current = self._board.open_round
                if current is not None and not current.closed and silo_id in current.pending:
                    return self._deliver(current, silo_id)
                evaluation = self._evaluations.task_for(silo_id)
                if evaluation is not None:
                    return evaluation
                remaining = give_up - control.clock()
                if remaining <= 0:
                    return NoTaskYet(state=control.state)
                self._lock.wait(min(remaining, WAIT_SLICE_SECONDS))

    def _deliver(self, current: OpenRound, silo_id: str) -> Task:
        task = current.tasks[silo_id]
        if silo_id not in current.delivered:
            # Charged when handed out: the silo may train even if its update never arrives.
            self._ledger.charge(silo_id, task.noise_multiplier, task.sample_rate, task.local_steps)
            current.delivered.add(silo_id)
        return replace(task, seconds_to_deadline=max(current.deadline - self._control.clock(), 0.0))

    def adapter_for(self, silo_id: str, task_id: str) -> SpooledPayload:
        """The global adapter file of the silo's task."""
        with self._lock:
            evaluated = self._evaluations.adapter_for(silo_id, task_id)
            if evaluated is not None:
                return evaluated
            return self._board.task_round(silo_id, task_id).adapter

    def check_upload(self, announcement: UploadAnnouncement) -> int | None:
        """Refuse an upload before its first chunk: unknown or closed round, duplicate, or too large.

        A re-send of the very update already received (same size and SHA-256: a silo whose first send's
        answer was lost) is acknowledged with its round index and not read again; None: go on and read it.
        """
        with self._lock:
            self._registry.touch(announcement.silo_id)
            current = self._board.task_round(announcement.silo_id, announcement.task_id)
            if announcement.silo_id not in current.delivered:
                # A restarted coordinator reopens the round with the same task ids; a silo that trained
                # it before the restart must take it again (and so be charged) before its update counts.
                raise FederationError(ErrorCode.NOT_HANDED_OUT, "the task was not handed to this silo")
            if (current.secure is not None) != announcement.masked:
                raise FederationError(
                    ErrorCode.INVALID_UPDATE,
                    "this round takes only masked updates"
                    if current.secure is not None
                    else "this round does not run secure aggregation: send the update itself",
                )
            if current.secure is not None:
                if current.secure.resent(announcement.silo_id, announcement.update.sha256):
                    return current.index
                already = None
            else:
                already = current.received.get(announcement.silo_id)
            if already is not None:
                if (already.sha256, already.payload_bytes) == (
                    announcement.update.sha256,
                    announcement.update.size_bytes,
                ):
                    LOGGER.info(
                        "round %d: %s re-sent its update; already received",
                        round_number(current.index),
                        announcement.silo_id,
                    )
                    return current.index
                raise FederationError(ErrorCode.DUPLICATE_UPDATE, f"round {round_number(current.index)}")
        if announcement.update.size_bytes > self._service.transport.max_payload_bytes:
            raise FederationError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"{announcement.update.size_bytes} bytes, cap {self._service.transport.max_payload_bytes}",
            )
        return None

    def accept_upload(self, announcement: UploadAnnouncement, payload: SpooledPayload) -> int:
        """Decode, validate and keep a received update; return its round index. How its statistics were
        noised is computed from what was published (`task_noise`). A secure round keeps the masked update
        as it came: only its length is checked."""
        if announcement.masked:
            return self._accept_masked(announcement, payload)
        silo_id = announcement.silo_id
        with self._lock:
            current = self._board.task_round(silo_id, announcement.task_id)
            noise = task_noise(
                self._config, current.tasks[silo_id], self._registry.get(silo_id), self._global_state()
            )
        try:
            update = update_from_file(payload.path, noise)
        except SerializationError as error:
            raise FederationError(ErrorCode.INVALID_UPDATE, str(error)) from error
        with self._lock:
            current = self._board.task_round(silo_id, announcement.task_id)
            if silo_id in current.received:
                raise FederationError(ErrorCode.DUPLICATE_UPDATE, f"round {round_number(current.index)}")
            record = self._registry.get(silo_id)
            ratio = validate_update(
                update,
                record.silo_id,
                float(record.dataset_size),
                current.selection,
                self._global_state(),
                global_norm=current.global_norm,
                max_norm_ratio=self._service.security.update_norm_bound,
            )
            LOGGER.debug("update of %s: ||update - global|| / ||global|| = %.4f", record.silo_id, ratio)
            current.received[record.silo_id] = ReceivedUpdate(
                update, payload.info.size_bytes, payload.info.sha256
            )
            self._ledger.note_reported(record, announcement.epsilon_spent)
            self._lock.notify_all()
            return current.index

    def _accept_masked(self, announcement: UploadAnnouncement, payload: SpooledPayload) -> int:
        with self._lock:
            current = self._board.task_round(announcement.silo_id, announcement.task_id)
            secure = current.secure
            if secure is None:
                raise FederationError(ErrorCode.INVALID_UPDATE, "this round takes no masked update")
            try:
                vector = ring_from_bytes(payload.path.read_bytes(), secure.layout.length)
            except ValueError as error:
                raise FederationError(ErrorCode.INVALID_UPDATE, str(error)) from error
            secure.accept_masked(announcement.silo_id, vector, payload.info.sha256)
            self._ledger.note_reported(self._registry.get(announcement.silo_id), announcement.epsilon_spent)
            self._lock.notify_all()
            return current.index

    def decline(self, silo_id: str, task_id: str, reason: str, epsilon_spent: float) -> None:
        """The silo refuses its task (e.g. its own budget); it gets no further task in this run."""
        with self._lock:
            current = self._board.task_round(silo_id, task_id)
            record = self._registry.get(silo_id)
            current.declined.add(silo_id)
            record.declined_reason = (reason or "declined")[:MAX_REASON_CHARS]
            self._ledger.note_reported(record, epsilon_spent)
            self._lock.notify_all()
        self._announce(
            EventKind.SILO_DECLINED,
            f"silo {silo_id} declined its task in round {round_number(current.index)}: {reason}",
        )


def _check_silo_name(name: str) -> None:
    if not SILO_NAME.fullmatch(name):
        raise FederationError(ErrorCode.INVALID_REGISTRATION, "silo name must match [A-Za-z0-9._-]{1,63}")
