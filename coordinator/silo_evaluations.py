"""Evaluation at the silos: the round driver opens and closes one evaluation of a global adapter, silos
take its tasks and send their releases (each charged to the silo's ledger line)."""

from __future__ import annotations

import logging
from dataclasses import replace

from aslora_coordinator.config import RunConfig
from aslora_coordinator.errors import FederationError
from aslora_coordinator.evaluation_phase import EvaluationPhase, evaluation_task_id, evaluation_tasks
from aslora_coordinator.ledger import PrivacyLedger
from aslora_coordinator.metrics import CoordinatorMetrics
from aslora_coordinator.registry import SiloRegistry
from aslora_coordinator.run_control import WAIT_SLICE_SECONDS, RunControl
from aslora_core.federated_evaluation import FederatedEvaluation
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.messages import EvaluationReply, Task
from aslora_rpc.transfer import SpooledPayload

LOGGER = logging.getLogger(__name__)


class SiloEvaluations:
    """The one writer of the open evaluation phase and the latest federated figures; every method takes
    the run's lock."""

    def __init__(
        self,
        config: RunConfig,
        run_id: str,
        *,
        control: RunControl,
        registry: SiloRegistry,
        ledger: PrivacyLedger,
        metrics: CoordinatorMetrics,
    ) -> None:
        self._config = config
        self._run_id = run_id
        self._control = control
        self._lock = control.lock
        self._registry = registry
        self._ledger = ledger
        self._metrics = metrics
        self._open: EvaluationPhase | None = None
        self._latest: FederatedEvaluation | None = None

    @property
    def latest(self) -> FederatedEvaluation | None:
        """The figures of the last evaluation closed, if any."""
        with self._lock:
            return self._latest

    def open(self, round_index: int, adapter: SpooledPayload) -> EvaluationPhase | None:
        """Ask every available silo to evaluate the adapter after round `round_index`; None when none is
        available."""
        seconds = self._config.rounds.round_deadline_seconds
        with self._lock:
            silo_ids = [record.silo_id for record in self._registry.available()]
            if not silo_ids or self._control.state.ended:
                return None
            task_id = evaluation_task_id(self._run_id, round_index)
            tasks = evaluation_tasks(
                silo_ids, task_id, round_index, self._config.federation, adapter=adapter, seconds=seconds
            )
            deadline = self._control.clock() + seconds
            self._open = EvaluationPhase(round_index, task_id, tasks, adapter, deadline)
            self._lock.notify_all()
            return self._open

    def close(self, phase: EvaluationPhase) -> FederatedEvaluation:
        """Wait until every asked silo answered, the deadline, a stop or the run's end; close the phase and
        keep its federated figures (the latest, for the admin views)."""
        control = self._control
        with self._lock:
            while phase.pending and not control.stop_requested and not control.state.ended:
                remaining = phase.deadline - control.clock()
                if remaining <= 0:
                    LOGGER.warning(
                        "evaluation of round %d closed without %s", phase.round_index, sorted(phase.pending)
                    )
                    break
                self._lock.wait(min(remaining, WAIT_SLICE_SECONDS))
            phase.closed = True
            self._open = None
            outcome = phase.outcome(self._config.federation)
            self._latest = outcome
            self._metrics.federated_evaluation(outcome, self._ledger)
            self._lock.notify_all()
            return outcome

    def task_for(self, silo_id: str) -> Task | None:
        """The silo's evaluation task while the open phase waits for its answer."""
        with self._lock:
            evaluation = self._open
            if evaluation is None or silo_id not in evaluation.pending:
                return None
            task = evaluation.tasks[silo_id]
            return replace(task, seconds_to_deadline=max(evaluation.deadline - self._control.clock(), 0.0))

    def adapter_for(self, silo_id: str, task_id: str) -> SpooledPayload | None:
        """The adapter file of the silo's evaluation task `task_id`; None when it is no such task."""
        with self._lock:
            evaluation = self._open
            if evaluation is not None and evaluation.task_id == task_id and silo_id in evaluation.tasks:
                return evaluation.adapter
            return None

    def excuse(self, silo_id: str, reason: str) -> None:
        """The open phase no longer waits for the silo (evicted), which it records with `reason`."""
        with self._lock:
            evaluation = self._open
            if evaluation is not None and silo_id in evaluation.pending:
                evaluation.declined[silo_id] = reason

    def release(self, reply: EvaluationReply) -> None:
        """Keep a silo's answer to its evaluation task; a release is charged to the silo's line in the
        ledger at the noise multiplier it used (nothing was released before it arrived)."""
        with self._lock:
            record = self._registry.touch(reply.silo_id)
            evaluation = self._open
            if evaluation is None or evaluation.task_id != reply.task_id:
                raise FederationError(ErrorCode.ROUND_CLOSED, f"evaluation task {reply.task_id}")
            release = evaluation.accept(reply, self._config.federation.evaluation_noise_multiplier)
            if release is not None:
                self._ledger.charge_evaluation(reply.silo_id, release.noise_multiplier)
            self._ledger.note_reported(record, reply.epsilon_spent)
            self._lock.notify_all()
