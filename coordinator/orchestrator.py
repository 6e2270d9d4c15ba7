"""The one writer of a run's state: it builds the run's parts around one lock and moves the run through
the round driver's transitions.

The gRPC servicers call the silo-facing parts (silo_desk.py, secure_relay.py, silo_evaluations.py) from
many threads; the round driver (round_driver.py) moves the run through the transitions here (wait for
participants, open a round, close it, publish its outcome, snapshot, restore). Every part takes the run's
lock (run_control.py); the slow parts happen outside it. Readers get read-only properties or `observe()`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

from aslora_coordinator.config import RunConfig, ServiceConfig
from aslora_coordinator.event_log import EventKind, EventLog
from aslora_coordinator.ledger import LedgerEntry, PrivacyLedger
from aslora_coordinator.metrics import CoordinatorMetrics
from aslora_coordinator.observation import RunObservation, SiloObservation
from aslora_coordinator.registry import SiloRecord, SiloRegistry
from aslora_coordinator.round_opening import new_secure_round, round_task_id, round_tasks
from aslora_coordinator.round_state import OpenRound, ReceivedUpdate
from aslora_coordinator.run_control import WAIT_SLICE_SECONDS, RunControl
from aslora_coordinator.secure_relay import SecureRelay
from aslora_coordinator.sigma_plans import SigmaPlans
from aslora_coordinator.silo_checkpoint import restore_silos, silo_snapshots
from aslora_coordinator.silo_desk import SiloDesk, task_noise
from aslora_coordinator.silo_evaluations import SiloEvaluations
from aslora_coordinator.state import CoordinatorSnapshot
from aslora_coordinator.task_board import TaskBoard
from aslora_coordinator.waiting import waiting_for
from aslora_core.evaluation import Evaluation
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import AdapterState, StatisticsNoise
from aslora_core.round_numbers import round_number
from aslora_core.rounds import RoundOutcome
from aslora_rpc.messages import RunPlan, RunState
from aslora_rpc.transfer import SpooledPayload

LOGGER = logging.getLogger(__name__)
SiloFigures = dict[str, tuple[int, float, float]]
"""Per registered silo: dataset size, noise multiplier and reported epsilon (for the results file)."""


class Orchestrator:
    """One run: `silo_desk`, `secure_relay` and `evaluations` answer its silos, the rest is for the round
    driver and the operators."""

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
        self._control = RunControl(clock)
        self._lock = self._control.lock
        self._registry = SiloRegistry(clock, config.rounds.heartbeat_timeout_seconds)
        self._ledger = PrivacyLedger(config.privacy, config.privacy_budget)
        self._board = TaskBoard(self._registry)
        self._sigmas = SigmaPlans(config.privacy, config.federation.rounds * config.training.local_steps)
        self._global_state = initial_state
        self._rounds_completed = 0
        self._latest_evaluation: tuple[float, float] | None = None
        self.metrics = metrics or CoordinatorMetrics.watching(self.connected_silos)
        self.events = events or EventLog()
        self.evaluations = SiloEvaluations(
            config,
            plan.run_id,
            control=self._control,
            registry=self._registry,
            ledger=self._ledger,
            metrics=self.metrics,
        )
        self.silo_desk = SiloDesk(
            config,
            service,
            plan,
            control=self._control,
            registry=self._registry,
            ledger=self._ledger,
            board=self._board,
            evaluations=self.evaluations,
            sigmas=self._sigmas,
            global_state=lambda: self.global_state,
            announce=self.announce,
        )
        self.secure_relay = SecureRelay(
            self._control, self._registry, self._board, service.server.max_wait_seconds
        )

    def announce(self, kind: EventKind, message: str) -> None:
        """A lifecycle event of this run: logged at INFO and added to the event log watchers follow."""
        LOGGER.info("run %s: %s", self.plan.run_id, message)
        self.events.append(self.plan.run_id, kind, message)

    # ---- read-only views ---------------------------------------------------------------------------------

    @property
    def state(self) -> RunState:
        """Where the run stands."""
        return self._control.state

    @property
    def reason(self) -> str:
        """Why the run ended (empty while it goes on)."""
        return self._control.reason

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
            return self._board.open_round

    @property
    def stop_requested(self) -> bool:
        """Whether an operator asked to stop the run."""
        return self._control.stop_requested

    @property
    def suspended(self) -> bool:
        """Whether the service is shutting down with this run unfinished (it resumes on a restart)."""
        return self._control.suspended

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
            current = self._board.open_round
            pending = None if current is None else (current.index, sorted(current.pending))
            state = self._control.state
            return RunObservation(
                state=state,
                reason=self._control.reason,
                rounds_completed=self._rounds_completed,
                open_round=None if current is None else current.index,
                latest_evaluation=self._latest_evaluation,
                federated_evaluation=self.evaluations.latest,
                silos=silos,
                ledger=tuple(self._ledger.entries([record.silo_id for record in records])),
                waiting_for=waiting_for(state, silos, self.config.rounds.min_silos, pending),
            )

    # ---- run control (run_control.py) ----------------------------------------------------------------------

    def end(self, state: RunState, reason: str) -> None:
        """End the run (idempotent: the first end wins) and wake every waiter."""
        self._control.end(state, reason)

    def pause(self) -> RunState:
        """Let the open round finish, then open no new one until `resume`."""
        with self._lock:
            return self._control.pause(round_open=self._board.open_round is not None)

    def resume(self) -> RunState:
        """Undo `pause`."""
        return self._control.resume()

    def stop(self, reason: str, state: RunState = RunState.STOPPED) -> None:
        """Ask the round driver to end the run now, as `state` (see RunControl.stop)."""
        self._control.stop(reason, state)

    def suspend(self) -> None:
        """The service shuts down with the run unfinished (see RunControl.suspend)."""
        self._control.suspend()

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Block until the run has ended (or the timeout passes); whether it has."""
        return self._control.wait_ended(timeout)

    def end_if_stop_requested(self) -> bool:
        """End the run as stopped if an operator asked to; whether it did."""
        return self._control.end_if_stop_requested()

    # ---- round transitions (called by the round driver) -------------------------------------------------

    def wait_for_participants(
        self, awaited: Collection[str] = (), grace_seconds: float = 0.0
    ) -> list[SiloRecord] | None:
        """Block until a round may open (not paused, min_silos available and, for up to `grace_seconds`,
        every silo of `awaited` too): copies of the available silos' records; None when the run ends
        (stopped, or too few registered in time)."""
        with self._lock:
            available = self._control.wait_for_participants(
                self._registry.available,
                self.config.rounds,
                first_round=self._rounds_completed == 0,
                awaited=awaited,
                awaited_until=self.clock() + grace_seconds,
            )
            return None if available is None else [replace(record) for record in available]

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
        task_id = round_task_id(self.plan.run_id, index, attempt)
        with self._lock:
            if self._control.suspended:
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
                    self._control.end(
                        RunState.FINISHED,
                        f"round {round_number(index)} would take silo {silo.silo_id} past the epsilon budget "
                        f"{self._ledger.budget:g}",
                    )
                    return None
            now = self.clock()
            secure = (
                new_secure_round(
                    self.config,
                    self.plan.run_id,
                    task_id,
                    participants,
                    selection,
                    global_state=self._global_state,
                    now=now,
                )
                if self.config.federation.secure_aggregation
                else None
            )
            tasks = round_tasks(
                self.config, task_id, index, participants, selection, adapter=adapter, secure=secure
            )
            current = OpenRound(
                index,
                attempt,
                task_id,
                selection,
                tasks,
                adapter,
                now + self.config.rounds.round_deadline_seconds,
                opened_at=now,
                global_norm=global_norm,
                secure=secure,
            )
            self._board.post(current)
            self._lock.notify_all()
            self.announce(
                EventKind.ROUND_OPENED,
                f"round {round_number(index)} attempt {attempt} open for {', '.join(tasks)}",
            )
            return current

    def close_round(self, current: OpenRound) -> list[ReceivedUpdate]:
        """Wait until every silo of the round reported or declined, its deadline, a stop or the run's end;
        close it and return the updates received, in silo-id order. A secure round's survivors are then
        asked for their shares (`secure_relay.close_unmasking` collects them)."""
        with self._lock:
            while current.pending and not self._control.interrupted:
                remaining = current.deadline - self.clock()
                if remaining <= 0:
                    LOGGER.warning(
                        "round %d closed at its deadline without %s",
                        round_number(current.index),
                        sorted(current.pending),
                    )
                    break
                self._lock.wait(min(remaining, WAIT_SLICE_SECONDS))
            self._board.close(current, self.clock())
            self._control.round_closed()
            self._lock.notify_all()
            received = sorted(current.received if current.secure is None else current.secure.masked)
            self.announce(
                EventKind.ROUND_CLOSED,
                f"round {round_number(current.index)} attempt {current.attempt} closed with "
                f"{len(received)} update(s) of {len(current.tasks)}"
                + (f": {', '.join(received)}" if received else ""),
            )
            return [current.received[silo] for silo in sorted(current.received)]

    def statistics_noise(self, current: OpenRound, silo_ids: list[str]) -> dict[str, StatisticsNoise]:
        """How each silo's released statistics were noised in `current`, from what was published."""
        config = self.config
        with self._lock:
            return {
                silo: task_noise(config, current.tasks[silo], self._registry.get(silo), self._global_state)
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

    # ---- checkpoints -----------------------------------------------------------------------------------

    def snapshot(
        self,
        config_fingerprint: str,
        policy_state: dict[str, object],
        results: dict[str, Any],
        failed_attempts: int = 0,
    ) -> CoordinatorSnapshot:
        """The run's state as a checkpoint, with the parts the round driver owns (policy, results)."""
        with self._lock:
            silos = silo_snapshots(self._registry, self._ledger)
            return CoordinatorSnapshot(
                run_id=self.plan.run_id,
                config_fingerprint=config_fingerprint,
                state=self._control.state,
                reason=self._control.reason,
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
            restore_silos(
                snapshot.silos,
                self.config.privacy,
                registry=self._registry,
                ledger=self._ledger,
                sigmas=self._sigmas,
            )
