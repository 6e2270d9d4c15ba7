"""The one writer of a run's state: registrations, tasks, uploads, round transitions and run control.

The gRPC servicers call the silo-facing and admin methods from many threads; the round driver
(round_driver.py) sequences the engine, the store and the recorder and moves the run through the
transitions here (wait for participants, open a round, close it, publish its outcome, snapshot, restore).
Every method takes the one private lock; the slow parts (planning a silo's sigma, decoding an update,
aggregating) happen outside it. Readers get read-only properties or a consistent `observe()`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aslora_coordinator.config import RunConfig, ServiceConfig
from aslora_coordinator.errors import FederationError
from aslora_coordinator.evaluation_phase import EvaluationPhase, evaluation_task_id, evaluation_tasks
from aslora_coordinator.event_log import EventKind, EventLog
from aslora_coordinator.ledger import LedgerEntry, PrivacyLedger
from aslora_coordinator.metrics import CoordinatorMetrics
from aslora_coordinator.observation import RunObservation, SiloObservation
from aslora_coordinator.registry import RUN_DECLINED, SiloRecord, SiloRegistry
from aslora_coordinator.round_state import OpenRound, ReceivedUpdate
from aslora_coordinator.secure_round import STEP_SHARE_OF_DEADLINE, SecureRound, statistics_keys
from aslora_coordinator.state import CoordinatorSnapshot, SiloSnapshot
from aslora_coordinator.update_validation import validate_update
from aslora_coordinator.waiting import waiting_for
from aslora_core.config import Weighting
from aslora_core.evaluation import Evaluation
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import AdapterState, StatisticsNoise
from aslora_core.federated_evaluation import FederatedEvaluation
from aslora_core.payload_files import update_from_file
from aslora_core.privacy import PrivacyAccountant
from aslora_core.privacy.planning import expected_sample_rate, plan_noise_multipliers
from aslora_core.round_numbers import round_number
from aslora_core.rounds import RoundOutcome
from aslora_core.serialization import SerializationError
from aslora_core.training.statistics import published_noise
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.messages import (
    Enrollment,
    EvaluationReply,
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
from aslora_rpc.secure_aggregation.context import RoundContext
from aslora_rpc.secure_aggregation.errors import SecureAggregationError
from aslora_rpc.secure_aggregation.fixed_point import RingCodec, UpdateLayout
from aslora_rpc.secure_aggregation.messages import ShareRelease, UnmaskRequest
from aslora_rpc.secure_aggregation.share_encryption import EncryptedShares
from aslora_rpc.secure_aggregation.signatures import KeyAdvertisement
from aslora_rpc.secure_aggregation_wire import ring_from_bytes
from aslora_rpc.transfer import SpooledPayload

LOGGER = logging.getLogger(__name__)
SILO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
"""Silo names become file names and metric labels: a conservative alphabet."""
MAX_REASON_CHARS = 500
"""A silo's decline reason is its own text: kept (and shown to operators) up to this length."""
WAIT_SLICE_SECONDS = 1.0
"""Waits re-check time-based conditions (deadlines, timeouts) at least this often."""
SiloFigures = dict[str, tuple[int, float, float]]
"""Per registered silo: dataset size, noise multiplier and reported epsilon (for the results file)."""


class Orchestrator:
    """Registrations, the open round, the ledger and the run state of one run."""

    def __init__(
        self,
        config: RunConfig,
        service: ServiceConfig,
        plan: RunPlan,
        initial_state: AdapterState,
        *,
        metrics: CoordinatorMetrics | None = None,
        events: EventLog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`metrics` and `events`: the service's, shared by its runs (default: this run's own)."""
        self.config = config
        self.service = service
        self.plan = plan
        self.clock = clock
        self._registry = SiloRegistry(clock, config.rounds.heartbeat_timeout_seconds)
        self._ledger = PrivacyLedger(config.privacy, config.privacy_budget)
        self._lock = threading.Condition()
        self._started_at = clock()
        self._state = RunState.WAITING_FOR_SILOS
        self._reason = ""
        self._paused = False
        self._stop_reason: str | None = None
        self._stop_state = RunState.STOPPED
        self._suspended = False
        self._open_round: OpenRound | None = None
        self._unmasking: OpenRound | None = None
        """A secure round whose uploads closed and whose survivors are asked for shares."""
        self._closed_tasks: dict[str, int] = {}
        self._global_state = initial_state
        self._rounds_completed = 0
        self._latest_evaluation: tuple[float, float] | None = None
        self._open_evaluation: EvaluationPhase | None = None
        self._latest_federated: FederatedEvaluation | None = None
        self._total_steps = config.federation.rounds * config.training.local_steps
        self._planned_sigmas: dict[float, float] = {}
        """The sigma planned for each sample rate q (restored silos bring theirs from the checkpoint)."""
        self.metrics = metrics or CoordinatorMetrics.watching(self.connected_silos)
        self.events = events or EventLog()

    def announce(self, kind: EventKind, message: str) -> None:
        """A lifecycle event of this run: logged at INFO and added to the event log watchers follow."""
        LOGGER.info("run %s: %s", self.plan.run_id, message)
        self.events.append(self.plan.run_id, kind, message)

    # ---- read-only views ---------------------------------------------------------------------------------

    @property
    def state(self) -> RunState:
        """Where the run stands."""
        with self._lock:
            return self._state

    @property
    def reason(self) -> str:
        """Why the run ended (empty while it goes on)."""
        with self._lock:
            return self._reason

    @property
    def rounds_completed(self) -> int:
        """Rounds aggregated so far."""
        with self._lock:
            return self._rounds_completed

    @property
    def global_state(self) -> AdapterState:
        """The current global adapter (aggregation never changes a published state in place)."""
        with self._lock:
            return self._global_state

    @property
    def current_round(self) -> OpenRound | None:
        """The round attempt in progress, if any (read it; only the orchestrator changes it)."""
        with self._lock:
            return self._open_round

    @property
    def stop_requested(self) -> bool:
        """Whether an operator asked to stop the run."""
        with self._lock:
            return self._stop_reason is not None

    @property
    def suspended(self) -> bool:
        """Whether the service is shutting down with this run unfinished (it resumes on a restart)."""
        with self._lock:
            return self._suspended

    @property
    def ledger_budget(self) -> float | None:
        """The per-silo epsilon no task may take the coordinator's recomputation past."""
        return self._ledger.budget

    def silo_records(self) -> list[SiloRecord]:
        """Copies of every registered silo's record, in id order."""
        with self._lock:
            return [replace(record) for record in self._registry.all()]

    def ledger_entries(self, silo_ids: list[str]) -> list[LedgerEntry]:
        """The ledger lines of the given silos, in that order."""
        with self._lock:
            return self._ledger.entries(silo_ids)

    def connected_silos(self) -> int:
        """How many registered silos were heard from within the heartbeat timeout."""
        with self._lock:
            return sum(self._registry.is_connected(record) for record in self._registry.all())

    def observe(self) -> RunObservation:
        """The whole run as it stands, read at one instant."""
        with self._lock:
            records = self._registry.all()
            silos = tuple(
                SiloObservation(
                    record=replace(record),
                    connected=self._registry.is_connected(record),
                    seconds_since_seen=self._registry.seconds_since_seen(record),
                    epsilon_recomputed=self._ledger.recomputed(record.silo_id),
                )
                for record in records
            )
            current = self._open_round
            pending = None if current is None else (current.index, sorted(current.pending))
            return RunObservation(
                state=self._state,
                reason=self._reason,
                rounds_completed=self._rounds_completed,
                open_round=None if self._open_round is None else self._open_round.index,
                latest_evaluation=self._latest_evaluation,
                federated_evaluation=self._latest_federated,
                silos=silos,
                ledger=tuple(self._ledger.entries([record.silo_id for record in records])),
                waiting_for=waiting_for(self._state, silos, self.config.rounds.min_silos, pending),
            )

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
        if registration.run_id != self.plan.run_id:
            raise FederationError(
                ErrorCode.RUN_CHANGED, f"the silo checked run {registration.run_id!r}; now {self.plan.run_id}"
            )
        if registration.dataset_size < 1:
            raise FederationError(ErrorCode.INVALID_REGISTRATION, "dataset size must be at least 1")
        if registration.base_model_fingerprint != self.plan.base_model_fingerprint:
            raise FederationError(
                ErrorCode.FINGERPRINT_MISMATCH,
                f"silo {registration.base_model_fingerprint[:12]}..., "
                f"coordinator {self.plan.base_model_fingerprint[:12]}...",
            )
        rate = expected_sample_rate(self.config.training.batch_size, registration.dataset_size)
        with self._lock:
            sigma = self._planned_sigmas.get(rate)
        if sigma is None:
            # Calibrating sigma to a target epsilon takes a while: planned once per q (it depends on q only),
            # so that silos registering again after a coordinator restart are admitted at once.
            sigma = plan_noise_multipliers(self.config.privacy, self._total_steps, {"silo": rate})["silo"]
        with self._lock:
            self._planned_sigmas[rate] = sigma
            self._refuse_if_ended()
            self._registry.register(registration.silo_name, registration.dataset_size, rate, sigma)
            self._leave_open_round(registration.silo_name, lambda task: task.sample_rate != rate)
            self._lock.notify_all()
        self.announce(
            EventKind.SILO_REGISTERED,
            f"silo {registration.silo_name} registered with {registration.dataset_size} records "
            f"(q {rate:.4g}, sigma {sigma:.4g})",
        )
        return Enrollment(protocol_version=PROTOCOL_VERSION, silo_id=registration.silo_name, plan=self.plan)

    def _leave_open_round(self, silo_id: str, when: Callable[[Task], bool]) -> None:
        """The open round stops waiting for the silo's task when `when` holds for it (a task planned for
        another dataset size, or an evicted silo's); a charge for a task handed out stays in the ledger."""
        current = self._open_round
        if current is None or silo_id not in current.pending or not when(current.tasks[silo_id]):
            return
        current.declined.add(silo_id)
        LOGGER.info("round %d: no longer waits for %s", round_number(current.index), silo_id)

    def evict(self, silo_id: str, reason: str) -> None:
        """An operator takes a silo out of the run: it gets no further task, and the open round no longer
        waits for it; its ledger line stays."""
        text = (reason or "evicted by the operator")[:MAX_REASON_CHARS]
        with self._lock:
            self._refuse_if_ended()
            self._registry.evict(silo_id, text)
            self._leave_open_round(silo_id, lambda task: True)
            evaluation = self._open_evaluation
            if evaluation is not None and silo_id in evaluation.pending:
                evaluation.declined[silo_id] = text
            self._lock.notify_all()
        self.announce(EventKind.SILO_EVICTED, f"silo {silo_id} evicted: {text}")

    def decline_run(self, silo_name: str, reason: str, epsilon_spent: float) -> None:
        """The silo checked this run's plan and will not take part: it is not counted, and the operator
        sees its reason among the run's silos."""
        if not SILO_NAME.fullmatch(silo_name):
            raise FederationError(ErrorCode.INVALID_REGISTRATION, "silo name must match [A-Za-z0-9._-]{1,63}")
        text = f"{RUN_DECLINED}: {reason or 'no reason given'}"[:MAX_REASON_CHARS]
        with self._lock:
            record = self._registry.record_run_decline(silo_name, text)
            self._note_epsilon(record, epsilon_spent)
            self._lock.notify_all()
        self.announce(EventKind.SILO_DECLINED, f"silo {silo_name} {text}")

    def heartbeat(self, silo_id: str, epsilon_spent: float) -> RunState:
        """Note that the silo is alive, and its own epsilon."""
        with self._lock:
            record = self._registry.touch(silo_id)
            self._note_epsilon(record, epsilon_spent)
            return self._state

    def wait_for_task(self, silo_id: str, wait_seconds: float) -> TaskOutcome:
        """The silo's task in the open round, the run's end, or nothing within the wait."""
        give_up = self.clock() + min(max(wait_seconds, 0.0), self.service.server.max_wait_seconds)
        with self._lock:
            self._registry.touch(silo_id)
            while True:
                if self._state.ended:
                    return RunEnd(state=self._state, reason=self._reason)
                if self._suspended:
                    return NoTaskYet(state=self._state)
                current = self._open_round
                if current is not None and not current.closed and silo_id in current.pending:
                    return self._deliver(current, silo_id)
                evaluation = self._open_evaluation
                if evaluation is not None and silo_id in evaluation.pending:
                    task = evaluation.tasks[silo_id]
                    return replace(task, seconds_to_deadline=max(evaluation.deadline - self.clock(), 0.0))
                remaining = give_up - self.clock()
                if remaining <= 0:
                    return NoTaskYet(state=self._state)
                self._lock.wait(min(remaining, WAIT_SLICE_SECONDS))

    def _deliver(self, current: OpenRound, silo_id: str) -> Task:
        task = current.tasks[silo_id]
        if silo_id not in current.delivered:
            # Charged when handed out: the silo may train even if its update never arrives.
            self._ledger.charge(silo_id, task.noise_multiplier, task.sample_rate, task.local_steps)
            current.delivered.add(silo_id)
        return replace(task, seconds_to_deadline=max(current.deadline - self.clock(), 0.0))

    def adapter_for(self, silo_id: str, task_id: str) -> SpooledPayload:
        """The global adapter file of the silo's task."""
        with self._lock:
            evaluation = self._open_evaluation
            if evaluation is not None and evaluation.task_id == task_id and silo_id in evaluation.tasks:
                return evaluation.adapter
            return self._task_round(silo_id, task_id).adapter

    def check_upload(self, announcement: UploadAnnouncement) -> int | None:
        """Refuse an upload before its first chunk: unknown or closed round, duplicate, or too large.

        A re-send of the very update already received (same size and SHA-256: a silo whose first send's
        answer was lost) is acknowledged with its round index and not read again; None: go on and read it.
        """
        with self._lock:
            self._registry.touch(announcement.silo_id)
            current = self._task_round(announcement.silo_id, announcement.task_id)
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
        if announcement.update.size_bytes > self.service.transport.max_payload_bytes:
            raise FederationError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"{announcement.update.size_bytes} bytes, cap {self.service.transport.max_payload_bytes}",
            )
        return None

    def accept_upload(self, announcement: UploadAnnouncement, payload: SpooledPayload) -> int:
        """Decode, validate and keep a received update; return its round index. How its statistics were
        noised is computed from what was published (the task's sigma, the run's clip norm, batch and
        steps, the silo's registered size), never read from the silo. A secure round keeps the masked
        update as it came: only its length is checked."""
        if announcement.masked:
            return self._accept_masked(announcement, payload)
        with self._lock:
            current = self._task_round(announcement.silo_id, announcement.task_id)
            noise = published_noise(
                current.tasks[announcement.silo_id].noise_multiplier,
                self.config.privacy,
                self.config.training,
                self._registry.get(announcement.silo_id).dataset_size,
                has_head=bool(self._global_state.head),
            )
        try:
            update = update_from_file(payload.path, noise)
        except SerializationError as error:
            raise FederationError(ErrorCode.INVALID_UPDATE, str(error)) from error
        with self._lock:
            current = self._task_round(announcement.silo_id, announcement.task_id)
            if announcement.silo_id in current.received:
                raise FederationError(ErrorCode.DUPLICATE_UPDATE, f"round {round_number(current.index)}")
            record = self._registry.get(announcement.silo_id)
            ratio = validate_update(
                update,
                record.silo_id,
                float(record.dataset_size),
                current.selection,
                self._global_state,
                global_norm=current.global_norm,
                max_norm_ratio=self.service.security.update_norm_bound,
            )
            LOGGER.debug("update of %s: ||update - global|| / ||global|| = %.4f", record.silo_id, ratio)
            current.received[record.silo_id] = ReceivedUpdate(
                update, payload.info.size_bytes, payload.info.sha256
            )
            self._note_epsilon(record, announcement.epsilon_spent)
            self._lock.notify_all()
            return current.index

    def _accept_masked(self, announcement: UploadAnnouncement, payload: SpooledPayload) -> int:
        with self._lock:
            current = self._task_round(announcement.silo_id, announcement.task_id)
            secure = current.secure
            if secure is None:
                raise FederationError(ErrorCode.INVALID_UPDATE, "this round takes no masked update")
            try:
                vector = ring_from_bytes(payload.path.read_bytes(), secure.layout.length)
            except ValueError as error:
                raise FederationError(ErrorCode.INVALID_UPDATE, str(error)) from error
            secure.accept_masked(announcement.silo_id, vector, payload.info.sha256)
            self._note_epsilon(self._registry.get(announcement.silo_id), announcement.epsilon_spent)
            self._lock.notify_all()
            return current.index

    # ---- secure aggregation (coordinator/secure_round.py) -----------------------------------------------

    def exchange_keys(
        self, silo_id: str, task_id: str, advertisement: KeyAdvertisement, wait_seconds: float
    ) -> tuple[KeyAdvertisement, ...] | None:
        """Keep the silo's signed round keys; every advertiser's once the key step closes within the wait,
        else None (the silo calls again with the same keys)."""
        if advertisement.silo != silo_id:
            raise FederationError(
                ErrorCode.IDENTITY_MISMATCH, f"keys for {advertisement.silo} from {silo_id}"
            )
        give_up = self.clock() + self._capped(wait_seconds)
        with self._lock:
            current, secure = self._secure_round(silo_id, task_id)
            secure.offer_keys(advertisement)
            self._lock.notify_all()
            while not secure.close_keys(current.tasks.keys() - current.declined, self.clock()):
                if not self._wait_until(give_up):
                    return None
                current, secure = self._secure_round(silo_id, task_id)
            self._lock.notify_all()
            return secure.advertisers

    def exchange_shares(
        self, silo_id: str, task_id: str, sealed: tuple[EncryptedShares, ...], wait_seconds: float
    ) -> tuple[EncryptedShares, ...] | None:
        """Keep the shares the silo sealed for its peers; those sealed for it once the share step closes
        within the wait, else None."""
        give_up = self.clock() + self._capped(wait_seconds)
        with self._lock:
            current, secure = self._secure_round(silo_id, task_id)
            secure.offer_shares(silo_id, sealed)
            self._lock.notify_all()
            while not secure.close_shares(current.tasks.keys() - current.declined, self.clock()):
                if not self._wait_until(give_up):
                    return None
                current, secure = self._secure_round(silo_id, task_id)
            self._lock.notify_all()
            return secure.inbox(silo_id)

    def unmask_request(self, silo_id: str, task_id: str, wait_seconds: float) -> UnmaskRequest | None:
        """The survivors the silo is asked about once the round's uploads closed (within the wait)."""
        give_up = self.clock() + self._capped(wait_seconds)
        with self._lock:
            while True:
                self._registry.touch(silo_id)
                unmasking = self._unmasking
                if unmasking is not None and unmasking.task_id == task_id and unmasking.secure is not None:
                    request = unmasking.secure.request
                    if request is not None and silo_id in request.survivors:
                        return request
                    raise FederationError(ErrorCode.ROUND_CLOSED, f"{silo_id} is not among the survivors")
                current = self._open_round
                if current is None or current.task_id != task_id:
                    self._task_round(silo_id, task_id)
                if not self._wait_until(give_up):
                    return None

    def release_shares(self, release: ShareRelease) -> None:
        """Keep a survivor's shares for the unmasking."""
        with self._lock:
            self._registry.touch(release.silo)
            unmasking = self._unmasking
            if unmasking is None or unmasking.task_id != release.task_id or unmasking.secure is None:
                raise FederationError(ErrorCode.ROUND_CLOSED, f"no unmasking of task {release.task_id}")
            unmasking.secure.accept_release(release)
            self._lock.notify_all()

    def _secure_round(self, silo_id: str, task_id: str) -> tuple[OpenRound, SecureRound]:
        self._refuse_if_ended()
        current = self._task_round(silo_id, task_id)
        if current.secure is None:
            raise FederationError(ErrorCode.INVALID_UPDATE, "this round does not run secure aggregation")
        if silo_id not in current.delivered:
            raise FederationError(ErrorCode.NOT_HANDED_OUT, "the task was not handed to this silo")
        return current, current.secure

    def _capped(self, wait_seconds: float) -> float:
        return min(max(wait_seconds, 0.0), self.service.server.max_wait_seconds)

    def _wait_until(self, give_up: float) -> bool:
        """Wait on the lock until woken or a slice passes; False once `give_up` has passed or the run is
        no longer going on."""
        remaining = give_up - self.clock()
        if remaining <= 0 or self._state.ended or self._suspended:
            return False
        self._lock.wait(min(remaining, WAIT_SLICE_SECONDS))
        return True

    def decline(self, silo_id: str, task_id: str, reason: str, epsilon_spent: float) -> None:
        """The silo refuses its task (e.g. its own budget); it gets no further task in this run."""
        with self._lock:
            current = self._task_round(silo_id, task_id)
            record = self._registry.get(silo_id)
            current.declined.add(silo_id)
            record.declined_reason = (reason or "declined")[:MAX_REASON_CHARS]
            self._note_epsilon(record, epsilon_spent)
            self._lock.notify_all()
        self.announce(
            EventKind.SILO_DECLINED,
            f"silo {silo_id} declined its task in round {round_number(current.index)}: {reason}",
        )

    def release_evaluation(self, reply: EvaluationReply) -> None:
        """Keep a silo's answer to its evaluation task; a release is charged to the silo's line in the
        ledger at the noise multiplier it used (nothing was released before it arrived)."""
        with self._lock:
            record = self._registry.touch(reply.silo_id)
            evaluation = self._open_evaluation
            if evaluation is None or evaluation.task_id != reply.task_id:
                raise FederationError(ErrorCode.ROUND_CLOSED, f"evaluation task {reply.task_id}")
            release = evaluation.accept(reply, self.config.federation.evaluation_noise_multiplier)
            if release is not None:
                self._ledger.charge_evaluation(reply.silo_id, release.noise_multiplier)
            self._note_epsilon(record, reply.epsilon_spent)
            self._lock.notify_all()

    def _task_round(self, silo_id: str, task_id: str) -> OpenRound:
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

    def _note_epsilon(self, record: SiloRecord, epsilon: float) -> None:
        record.epsilon_reported = max(record.epsilon_reported, epsilon)
        self._ledger.report(record.silo_id, record.epsilon_reported)

    def _refuse_if_ended(self) -> None:
        if self._state.ended:
            raise FederationError(ErrorCode.RUN_ENDED, f"{self._state.value}: {self._reason}")

    # ---- run control ------------------------------------------------------------------------------------

    def end(self, state: RunState, reason: str) -> None:
        """End the run (idempotent: the first end wins) and wake every waiter."""
        with self._lock:
            self._end(state, reason)

    def _end(self, state: RunState, reason: str) -> None:
        if not self._state.ended:
            self._state, self._reason = state, reason
        self._lock.notify_all()

    def pause(self) -> RunState:
        """Let the open round finish, then open no new one until `resume`."""
        with self._lock:
            self._paused = True
            if self._open_round is None and not self._state.ended:
                self._state = RunState.PAUSED
            self._lock.notify_all()
            return self._state

    def resume(self) -> RunState:
        """Undo `pause`."""
        with self._lock:
            self._paused = False
            if self._state is RunState.PAUSED:
                self._state = RunState.RUNNING
            self._lock.notify_all()
            return self._state

    def stop(self, reason: str, state: RunState = RunState.STOPPED) -> None:
        """Ask the round driver to end the run now, as `state` (stopped, or cancelled by the operator); the
        open round is abandoned. Before the driver has started, the run ends at once."""
        with self._lock:
            self._stop_reason = reason or f"{state.value} by the operator"
            self._stop_state = state
            self._lock.notify_all()

    def suspend(self) -> None:
        """The service shuts down with the run unfinished: the round driver stops without ending the run
        (an open round is abandoned; its checkpoint stays), and silos are told nothing but to wait: they
        find the run again when the service restarts and resumes it."""
        with self._lock:
            self._suspended = True
            self._lock.notify_all()

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Block until the run has ended (or the timeout passes); whether it has."""
        with self._lock:
            return self._lock.wait_for(lambda: self._state.ended, timeout)

    def wait_stop_requested(self, timeout: float | None) -> bool:
        """Block until an operator asks to stop (or the timeout passes); whether one did."""
        with self._lock:
            return self._lock.wait_for(lambda: self._stop_reason is not None, timeout)

    def end_if_stop_requested(self) -> bool:
        """End the run as stopped if an operator asked to; whether it did."""
        with self._lock:
            if self._stop_reason is None:
                return False
            self._end(self._stop_state, self._stop_reason)
            return True

    # ---- round transitions (called by the round driver) -------------------------------------------------

    def wait_for_participants(self) -> list[SiloRecord] | None:
        """Block until a round may open (not paused, min_silos available): copies of the available silos'
        records; None when the run ends (stopped, or too few registered in time)."""
        rounds = self.config.rounds
        with self._lock:
            while True:
                if self._stop_reason is not None:
                    self._end(self._stop_state, self._stop_reason)
                if self._state.ended or self._suspended:
                    return None
                if self._paused:
                    self._state = RunState.PAUSED
                else:
                    available = self._registry.available()
                    if len(available) >= rounds.min_silos:
                        self._state = RunState.RUNNING
                        return [replace(record) for record in available]
                    timeout = rounds.registration_timeout_seconds
                    waited = self.clock() - self._started_at
                    if timeout is not None and self._rounds_completed == 0 and waited > timeout:
                        self._end(RunState.FAILED, f"fewer than min_silos registered in {timeout:g}s")
                        return None
                    self._state = RunState.WAITING_FOR_SILOS
                self._lock.wait(WAIT_SLICE_SECONDS)

    def open_round(
        self,
        index: int,
        attempt: int,
        *,
        selection: dict[str, FactorChoice],
        participants: list[SiloRecord],
        adapter: SpooledPayload,
        global_norm: float,
    ) -> OpenRound | None:
        """Publish the round's tasks; None if one would take a silo past the run's budget (the run is then
        finished) or the service is shutting down."""
        steps = self.config.training.local_steps
        deadline_seconds = self.config.rounds.round_deadline_seconds
        task_id = f"{self.plan.run_id}-r{index}-a{attempt}"
        with self._lock:
            if self._suspended:
                return None
            # Each silo's plan as registered now: one that registered again since it was chosen (another
            # dataset size) is planned for its current q; an evicted one gets no task.
            participants = [
                replace(record)
                for record in map(self._registry.get, (silo.silo_id for silo in participants))
                if not record.evicted
            ]
            for silo in participants:
                if self._ledger.would_exceed(silo.silo_id, silo.noise_multiplier, silo.sample_rate, steps):
                    self._end(
                        RunState.FINISHED,
                        f"round {round_number(index)} would take silo {silo.silo_id} past the epsilon budget "
                        f"{self._ledger.budget:g}",
                    )
                    return None
            now = self.clock()
            secure = (
                self._new_secure_round(task_id, participants, selection, now)
                if self.config.federation.secure_aggregation
                else None
            )
            tasks = {
                silo.silo_id: Task(
                    task_id=task_id,
                    round_index=index,
                    selection=selection,
                    noise_multiplier=silo.noise_multiplier,
                    sample_rate=silo.sample_rate,
                    local_steps=steps,
                    adapter=adapter.info,
                    seconds_to_deadline=deadline_seconds,
                    secure_aggregation=None if secure is None else secure.plan_for(silo.silo_id),
                )
                for silo in participants
            }
            self._open_round = OpenRound(
                index,
                attempt,
                task_id,
                selection,
                tasks,
                adapter,
                now + deadline_seconds,
                opened_at=now,
                global_norm=global_norm,
                secure=secure,
            )
            self._lock.notify_all()
            self.announce(
                EventKind.ROUND_OPENED,
                f"round {round_number(index)} attempt {attempt} open for {', '.join(tasks)}",
            )
            return self._open_round

    def _new_secure_round(
        self, task_id: str, participants: list[SiloRecord], selection: dict[str, FactorChoice], now: float
    ) -> SecureRound:
        """The public facts of a secure round: its silos and threshold, their weights, layout and codec."""
        uniform = self.config.federation.weighting is Weighting.UNIFORM
        weights = {s.silo_id: 1.0 if uniform else float(s.dataset_size) for s in participants}
        keys = statistics_keys(selection, self.config.privacy.clipping, self.config.training.local_steps)
        return SecureRound(
            context=RoundContext.with_majority(self.plan.run_id, task_id, weights),
            layout=UpdateLayout.for_round(self._global_state, selection, keys),
            codec=RingCodec(round_weight=sum(weights.values())),
            weights=weights,
            step_seconds=STEP_SHARE_OF_DEADLINE * self.config.rounds.round_deadline_seconds,
            opened_at=now,
        )

    def close_round(self, current: OpenRound) -> list[ReceivedUpdate]:
        """Wait until every silo of the round reported or declined, its deadline, a stop or the run's end;
        close it and return the updates received, in silo-id order. A secure round's survivors are then
        asked for their shares (`close_unmasking` collects them)."""
        with self._lock:
            while (
                current.pending
                and self._stop_reason is None
                and not self._state.ended
                and not self._suspended
            ):
                remaining = current.deadline - self.clock()
                if remaining <= 0:
                    LOGGER.warning(
                        "round %d closed at its deadline without %s",
                        round_number(current.index),
                        sorted(current.pending),
                    )
                    break
                self._lock.wait(min(remaining, WAIT_SLICE_SECONDS))
            current.closed = True
            self._closed_tasks[current.task_id] = current.index
            self._open_round = None
            if current.secure is not None and len(current.secure.masked) >= current.secure.context.threshold:
                # Fewer than t survivors: nobody is asked for shares, and nothing is decoded.
                current.secure.open_unmasking(self.clock())
                self._unmasking = current
            if self._paused:
                self._state = RunState.PAUSED
            self._lock.notify_all()
            received = sorted(current.received if current.secure is None else current.secure.masked)
            self.announce(
                EventKind.ROUND_CLOSED,
                f"round {round_number(current.index)} attempt {current.attempt} closed with "
                f"{len(received)} update(s) of {len(current.tasks)}"
                + (f": {', '.join(received)}" if received else ""),
            )
            return [current.received[silo] for silo in sorted(current.received)]

    def close_unmasking(self, current: OpenRound) -> list[ShareRelease]:
        """Wait until every survivor of a secure round released its shares, the step's time, a stop or the
        run's end; the releases, in silo order."""
        secure = current.secure
        if secure is None:
            raise SecureAggregationError("the round does not run secure aggregation")
        with self._lock:
            while (
                not secure.unmasking_done(self.clock())
                and self._stop_reason is None
                and not self._state.ended
                and not self._suspended
            ):
                self._lock.wait(WAIT_SLICE_SECONDS)
            self._unmasking = None
            self._lock.notify_all()
            return [secure.releases[silo] for silo in sorted(secure.releases)]

    def statistics_noise(self, current: OpenRound, silo_ids: list[str]) -> dict[str, StatisticsNoise]:
        """How each silo's released statistics were noised in `current`, from what was published."""
        with self._lock:
            return {
                silo: published_noise(
                    current.tasks[silo].noise_multiplier,
                    self.config.privacy,
                    self.config.training,
                    self._registry.get(silo).dataset_size,
                    has_head=bool(self._global_state.head),
                )
                for silo in silo_ids
            }

    def publish_outcome(
        self, outcome: RoundOutcome, evaluation: Evaluation | None, round_seconds: float
    ) -> SiloFigures:
        """Make an aggregated round's adapter the global one, count who took part, keep its evaluation,
        update the metrics; the registered silos' figures for the results file."""
        with self._lock:
            self._global_state = outcome.state
            self._rounds_completed = outcome.round_index + 1
            for silo_id in outcome.silos:
                self._registry.get(silo_id).rounds_participated += 1
            if evaluation is not None:
                self._latest_evaluation = (evaluation.accuracy, evaluation.loss)
            figures = {
                r.silo_id: (r.dataset_size, r.noise_multiplier, r.epsilon_reported)
                for r in self._registry.all()
            }
            self.metrics.round_completed(outcome, round_seconds, self._ledger, figures)
            return figures

    # ---- evaluation at the silos (called by the round driver; evaluation_phase.py) ----------------------

    def open_evaluation(self, round_index: int, adapter: SpooledPayload) -> EvaluationPhase | None:
        """Ask every available silo to evaluate the adapter after round `round_index`; None when none is
        available."""
        seconds = self.config.rounds.round_deadline_seconds
        with self._lock:
            silo_ids = [record.silo_id for record in self._registry.available()]
            if not silo_ids or self._state.ended:
                return None
            task_id = evaluation_task_id(self.plan.run_id, round_index)
            tasks = evaluation_tasks(
                silo_ids, task_id, round_index, self.config.federation, adapter=adapter, seconds=seconds
            )
            self._open_evaluation = EvaluationPhase(
                round_index, task_id, tasks, adapter, self.clock() + seconds
            )
            self._lock.notify_all()
            return self._open_evaluation

    def close_evaluation(self, phase: EvaluationPhase) -> FederatedEvaluation:
        """Wait until every asked silo answered, the deadline, a stop or the run's end; close the phase and
        keep its federated figures (the latest, for the admin views)."""
        with self._lock:
            while phase.pending and self._stop_reason is None and not self._state.ended:
                remaining = phase.deadline - self.clock()
                if remaining <= 0:
                    LOGGER.warning(
                        "evaluation of round %d closed without %s", phase.round_index, sorted(phase.pending)
                    )
                    break
                self._lock.wait(min(remaining, WAIT_SLICE_SECONDS))
            phase.closed = True
            self._open_evaluation = None
            outcome = phase.outcome(self.config.federation)
            self._latest_federated = outcome
            self.metrics.federated_evaluation(outcome, self._ledger)
            self._lock.notify_all()
            return outcome

    def snapshot(
        self,
        config_fingerprint: str,
        policy_state: dict[str, object],
        results: dict[str, Any],
        failed_attempts: int = 0,
    ) -> CoordinatorSnapshot:
        """The run's state as a checkpoint, with the parts the round driver owns (policy, results)."""
        with self._lock:
            silos = tuple(
                SiloSnapshot(
                    silo_id=r.silo_id,
                    dataset_size=r.dataset_size,
                    sample_rate=r.sample_rate,
                    noise_multiplier=r.noise_multiplier,
                    rounds_participated=r.rounds_participated,
                    epsilon_reported=r.epsilon_reported,
                    declined_reason=r.declined_reason,
                    ledger=self._ledger.accountant_state(r.silo_id),
                    evicted=r.evicted,
                )
                for r in self._registry.all()
            )
            return CoordinatorSnapshot(
                run_id=self.plan.run_id,
                config_fingerprint=config_fingerprint,
                state=self._state,
                reason=self._reason,
                rounds_completed=self._rounds_completed,
                global_state=self._global_state,
                policy_state=policy_state,
                silos=silos,
                results=results,
                failed_attempts=failed_attempts,
            )

    def restore(self, snapshot: CoordinatorSnapshot) -> None:
        """Put back the checkpointed adapter, round count, registry (with each silo's planned sigma) and
        ledger. Silos come back as registered but not connected: each is available again once it calls."""
        with self._lock:
            self._global_state = snapshot.global_state
            self._rounds_completed = snapshot.rounds_completed
            for silo in snapshot.silos:
                self._registry.restore(silo.record())
                if silo.dataset_size > 0:
                    self._planned_sigmas[silo.sample_rate] = silo.noise_multiplier
                recomputed = PrivacyAccountant.from_dict(silo.ledger, self.config.privacy.accountant)
                self._ledger.restore(silo.silo_id, recomputed, silo.epsilon_reported)
