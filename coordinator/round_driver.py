"""The round loop, on its own thread: wait for silos, open a round, collect updates, aggregate, evaluate.

Aggregation and selection scoring go through aslora_core.rounds.RoundEngine, exactly as in the
in-process simulation, so a deterministic run gives the same adapter over both transports.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

import numpy as np

from aslora_coordinator.crash_points import CrashPoint, maybe_crash
from aslora_coordinator.global_model import GlobalModel
from aslora_coordinator.orchestrator import WAIT_SLICE_SECONDS, Orchestrator
from aslora_coordinator.registry import SiloRecord
from aslora_coordinator.results_recorder import ResultsRecorder
from aslora_coordinator.round_state import OpenRound, ReceivedUpdate
from aslora_coordinator.state import CoordinatorSnapshot, SiloSnapshot, StateStore
from aslora_coordinator.update_validation import adapter_norm
from aslora_core.factors import FactorChoice
from aslora_core.privacy import derive_seed
from aslora_core.rounds import RoundEngine
from aslora_core.serialization import state_to_bytes
from aslora_rpc.messages import RunState, Task
from aslora_rpc.transfer import SpooledPayload, write_payload

LOGGER = logging.getLogger(__name__)


class RoundDriver:
    """Moves one run from its first round to its end; every state change goes through the orchestrator."""

    def __init__(
        self,
        *,
        orchestrator: Orchestrator,
        engine: RoundEngine,
        model: GlobalModel,
        recorder: ResultsRecorder,
        store: StateStore,
        spool_dir: Path,
        config_fingerprint: str,
        resumed: bool = False,
    ) -> None:
        """`resumed`: the engine, orchestrator and recorder were restored from a checkpoint."""
        self.orchestrator = orchestrator
        self.engine = engine
        self.model = model
        self.recorder = recorder
        self.store = store
        self.spool_dir = spool_dir
        self.config_fingerprint = config_fingerprint
        self.resumed = resumed
        self.first_attempt = 0
        """Where the next round's attempts start (a resumed run may be in the middle of redoing a round)."""
        self._config = orchestrator.config

    def start(self) -> threading.Thread:
        """Run the loop on a daemon thread."""
        thread = threading.Thread(target=self.run, name="round-driver", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        """The whole run; an unexpected error fails the run instead of leaving silos waiting."""
        try:
            self._run()
        except Exception as error:
            LOGGER.exception("the round driver failed")
            self.orchestrator.end(
                RunState.FAILED, f"internal error in the round driver ({type(error).__name__})"
            )

    def _run(self) -> None:
        if not self.resumed:
            self.recorder.record_initial(self.model.evaluate(self.engine.state))
            # The first checkpoint fixes the run id: a coordinator killed in round 0 resumes the same run.
            self.store.save(self._snapshot())
        rounds = self._config.federation.rounds
        while self.engine.round_index < rounds:
            if not self._play_round():
                return
        self.orchestrator.end(RunState.FINISHED, f"all {rounds} rounds done")

    def _play_round(self) -> bool:
        """Attempt the next round until it aggregates; False when the run ended instead."""
        selection = self.engine.plan()
        adapter = write_payload(
            state_to_bytes(self.engine.state), self.spool_dir, f"adapter-r{self.engine.round_index:05d}-"
        )
        first_attempt, self.first_attempt = self.first_attempt, 0
        try:
            for attempt in range(first_attempt, self._config.rounds.max_round_attempts):
                available = self._wait_until_ready()
                if available is None:
                    return False
                # The registry as the attempt opens (silos and their planned sigma), so that a restarted
                # coordinator re-admits them without planning again. Taken before any task of the attempt
                # is handed out: none of its charges is in it (a restart charges them when it hands them out).
                self.store.save(self._snapshot(failed_attempts=attempt))
                current = self._open(selection, self._choose(available, attempt), attempt, adapter)
                if current is None:
                    return False
                received = self._collect(current)
                if self.orchestrator.stop_reason is not None:
                    self.orchestrator.end(RunState.STOPPED, self.orchestrator.stop_reason)
                    return False
                if len(received) >= self._config.rounds.min_silos:
                    self._complete(current, received)
                    return True
                LOGGER.warning(
                    "round %d attempt %d: %d update(s), fewer than min_silos %d; redoing the round",
                    current.index,
                    attempt,
                    len(received),
                    self._config.rounds.min_silos,
                )
                # The failed attempt's tasks are charged: checkpoint them, so that a restart neither forgets
                # those charges nor hands out the same task id again.
                self.store.save(self._snapshot(failed_attempts=attempt + 1))
        finally:
            adapter.path.unlink(missing_ok=True)
        self.orchestrator.end(
            RunState.FAILED,
            f"round {self.engine.round_index} got fewer than {self._config.rounds.min_silos} updates "
            f"in {self._config.rounds.max_round_attempts} attempts",
        )
        return False

    def _wait_until_ready(self) -> list[SiloRecord] | None:
        """Block until a round may open (not paused, min_silos available); None when the run ends."""
        orchestrator = self.orchestrator
        timeout = self._config.rounds.registration_timeout_seconds
        with orchestrator.lock:
            while True:
                if orchestrator.stop_reason is not None:
                    orchestrator.end(RunState.STOPPED, orchestrator.stop_reason)
                if orchestrator.state.ended:
                    return None
                if orchestrator.paused:
                    orchestrator.state = RunState.PAUSED
                else:
                    available = orchestrator.registry.available()
                    if len(available) >= self._config.rounds.min_silos:
                        orchestrator.state = RunState.RUNNING
                        return available
                    waited = orchestrator.clock() - orchestrator.started_at
                    if timeout is not None and orchestrator.rounds_completed == 0 and waited > timeout:
                        orchestrator.end(RunState.FAILED, f"fewer than min_silos registered in {timeout:g}s")
                        return None
                    orchestrator.state = RunState.WAITING_FOR_SILOS
                orchestrator.lock.wait(WAIT_SLICE_SECONDS)

    def _choose(self, available: list[SiloRecord], attempt: int) -> list[SiloRecord]:
        """All available silos, or a seeded random fraction of them (at least min_silos), in id order."""
        wanted = max(
            self._config.rounds.min_silos, math.ceil(self._config.rounds.silo_fraction * len(available))
        )
        if wanted >= len(available):
            return available
        seed = derive_seed(self._config.federation.seed, "participants", self.engine.round_index, attempt)
        picked = np.random.default_rng(seed).choice(len(available), size=wanted, replace=False)
        return [available[int(i)] for i in sorted(picked)]

    def _open(
        self,
        selection: dict[str, FactorChoice],
        participants: list[SiloRecord],
        attempt: int,
        adapter: SpooledPayload,
    ) -> OpenRound | None:
        """Publish the round's tasks, unless one of them would take a silo past the run's budget."""
        orchestrator = self.orchestrator
        index = self.engine.round_index
        task_id = f"{orchestrator.plan.run_id}-r{index}-a{attempt}"
        steps = self._config.training.local_steps
        global_norm = adapter_norm(self.engine.state)
        with orchestrator.lock:
            for silo in participants:
                if orchestrator.ledger.would_exceed(
                    silo.silo_id, silo.noise_multiplier, silo.sample_rate, steps
                ):
                    orchestrator.end(
                        RunState.FINISHED,
                        f"round {index} would take silo {silo.silo_id} past the epsilon budget "
                        f"{orchestrator.ledger.budget:g}",
                    )
                    return None
            now = orchestrator.clock()
            deadline = now + self._config.rounds.round_deadline_seconds
            tasks = {
                silo.silo_id: Task(
                    task_id=task_id,
                    round_index=index,
                    selection=selection,
                    noise_multiplier=silo.noise_multiplier,
                    sample_rate=silo.sample_rate,
                    local_steps=steps,
                    adapter=adapter.info,
                    seconds_to_deadline=self._config.rounds.round_deadline_seconds,
                )
                for silo in participants
            }
            current = OpenRound(
                index,
                attempt,
                task_id,
                selection,
                tasks,
                adapter,
                deadline,
                opened_at=now,
                global_norm=global_norm,
            )
            orchestrator.open_round = current
            orchestrator.lock.notify_all()
        LOGGER.info("round %d attempt %d open for %s", index, attempt, ", ".join(tasks))
        return current

    def _collect(self, current: OpenRound) -> list[ReceivedUpdate]:
        """Wait until every silo reported or declined, the deadline, or a stop; then close the round."""
        orchestrator = self.orchestrator
        with orchestrator.lock:
            while current.pending and orchestrator.stop_reason is None:
                remaining = current.deadline - orchestrator.clock()
                if remaining <= 0:
                    LOGGER.warning(
                        "round %d closed at its deadline without %s", current.index, sorted(current.pending)
                    )
                    break
                orchestrator.lock.wait(min(remaining, WAIT_SLICE_SECONDS))
            current.closed = True
            orchestrator.closed_tasks[current.task_id] = current.index
            orchestrator.open_round = None
            if orchestrator.paused:
                orchestrator.state = RunState.PAUSED
            orchestrator.lock.notify_all()
            return [current.received[silo] for silo in sorted(current.received)]

    def _complete(self, current: OpenRound, received: list[ReceivedUpdate]) -> None:
        """Aggregate, score, evaluate, record and checkpoint one round."""
        maybe_crash(CrashPoint.BEFORE_AGGREGATION, current.index)
        outcome = self.engine.complete(current.selection, [item.update for item in received])
        evaluation = self.model.evaluate(outcome.state)
        orchestrator = self.orchestrator
        with orchestrator.lock:
            orchestrator.global_state = outcome.state
            orchestrator.rounds_completed = self.engine.round_index
            for silo_id in outcome.silos:
                orchestrator.registry.get(silo_id).rounds_participated += 1
            if evaluation is not None:
                orchestrator.latest_evaluation = (evaluation.accuracy, evaluation.loss)
            silos = {
                r.silo_id: (r.dataset_size, r.noise_multiplier, r.epsilon_reported)
                for r in orchestrator.registry.all()
            }
            orchestrator.metrics.round_completed(
                outcome, orchestrator.clock() - current.opened_at, orchestrator.ledger, silos
            )
        if evaluation is not None:
            seconds = time.monotonic() - current.opened_at
            record = self.recorder.record_round(outcome, received, evaluation, silos, seconds)
            LOGGER.info("round %d: accuracy %.4f loss %.4f", record.round, record.accuracy, record.loss)
        maybe_crash(CrashPoint.AFTER_AGGREGATION, current.index)
        self.store.save(self._snapshot())
        maybe_crash(CrashPoint.AFTER_CHECKPOINT, current.index)

    def _snapshot(self, failed_attempts: int = 0) -> CoordinatorSnapshot:
        orchestrator = self.orchestrator
        with orchestrator.lock:
            silos = tuple(
                SiloSnapshot(
                    silo_id=r.silo_id,
                    dataset_size=r.dataset_size,
                    sample_rate=r.sample_rate,
                    noise_multiplier=r.noise_multiplier,
                    rounds_participated=r.rounds_participated,
                    epsilon_reported=r.epsilon_reported,
                    declined_reason=r.declined_reason,
                    ledger=orchestrator.ledger.accountant_state(r.silo_id),
                )
                for r in orchestrator.registry.all()
            )
            return CoordinatorSnapshot(
                run_id=orchestrator.plan.run_id,
                config_fingerprint=self.config_fingerprint,
                state=orchestrator.state,
                reason=orchestrator.reason,
                rounds_completed=orchestrator.rounds_completed,
                global_state=orchestrator.global_state,
                policy_state=self.engine.policy.state_dict(),
                silos=silos,
                results=self.recorder.result.to_json(),
                failed_attempts=failed_attempts,
            )
