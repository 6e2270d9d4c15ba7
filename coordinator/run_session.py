"""One run being served: its global model, orchestrator, round driver and results, built from the run's
settings (and resumed from its checkpoint, when it has one)."""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from pathlib import Path

from aslora_coordinator.config import RunConfig, ServiceConfig
from aslora_coordinator.event_log import EventLog
from aslora_coordinator.global_model import GlobalModel
from aslora_coordinator.metrics import CoordinatorMetrics
from aslora_coordinator.orchestrator import Orchestrator
from aslora_coordinator.results_recorder import ResultsRecorder
from aslora_coordinator.resume import check_resumable, config_fingerprint, restore
from aslora_coordinator.round_driver import RoundDriver
from aslora_coordinator.state import CheckpointError, StateStore
from aslora_core.fingerprint import base_model_fingerprint
from aslora_core.rounds import RoundEngine
from aslora_core.selection import make_policy
from aslora_core.tasks import make_task
from aslora_rpc.messages import RunPlan

LOGGER = logging.getLogger(__name__)
DRIVER_JOIN_SECONDS = 600.0
"""Longest wait for a round driver to finish what it is doing (an aggregation, an evaluation) at the end."""


class RunSession:
    """The parts of one run; `start` sets its round driver going."""

    def __init__(
        self,
        run_id: str,
        config: RunConfig,
        service: ServiceConfig,
        *,
        store: StateStore,
        work_dir: Path,
        results_path: Path,
        metrics: CoordinatorMetrics | None = None,
        events: EventLog | None = None,
    ) -> None:
        """Load the model and evaluation data and plan the run, or resume it from the store's checkpoint;
        CheckpointError when the checkpoint must not be resumed (another run's, or another configuration)."""
        self.run_id = run_id
        self.config = config
        self.work_dir = work_dir
        fingerprint = base_model_fingerprint(config.model_path)
        run_fingerprint = config_fingerprint(config, fingerprint)
        checkpoint = store.load()
        if checkpoint is not None:
            if checkpoint.run_id != run_id:
                raise CheckpointError(f"the checkpoint of run {run_id} holds run {checkpoint.run_id}")
            check_resumable(checkpoint, run_fingerprint)
        self.model = GlobalModel(
            make_task(config.task),
            config.model_path,
            label_names=config.label_names,
            lora=config.lora,
            seed=config.federation.seed,
            evaluation=config.evaluation,
        )
        initial = self.model.initial_state
        federation = config.federation
        policy = make_policy(
            federation.policy, initial.layer_names, federation.score, federation.seed, initial.scaling
        )
        plan = run_plan(config, service, fingerprint, run_id)
        self.orchestrator = Orchestrator(config, service, plan, initial, metrics=metrics, events=events)
        recorder = ResultsRecorder(
            federation.policy, federation.reported_score, _settings_record(config), results_path
        )
        engine = RoundEngine.for_federation(policy, initial, config.training, federation)
        self.resumed_after: int | None = None
        """Rounds the checkpoint this run resumed from had completed (None: started afresh)."""
        if checkpoint is not None:
            restore(checkpoint, self.orchestrator, engine, recorder)
            self.resumed_after = checkpoint.rounds_completed
        self.driver = RoundDriver(
            orchestrator=self.orchestrator,
            engine=engine,
            model=self.model,
            recorder=recorder,
            store=store,
            spool_dir=work_dir / "adapters",
            config_fingerprint=run_fingerprint,
            resumed=checkpoint is not None,
        )
        if checkpoint is not None:
            self.driver.first_attempt = checkpoint.failed_attempts
            if checkpoint.state.ended:
                # Checkpointed once it ended: a restart before the queue noted the end ends it again.
                self.orchestrator.end(checkpoint.state, checkpoint.reason)
        self._thread: threading.Thread | None = None

    @property
    def plan(self) -> RunPlan:
        """The plan every silo of the run trains with."""
        return self.orchestrator.plan

    def start(self) -> None:
        """Start the run's rounds on their own thread."""
        self._thread = self.driver.start()

    def join(self) -> None:
        """Wait for the round driver to finish (the run ended, or the service suspended it)."""
        if self._thread is not None:
            self._thread.join(DRIVER_JOIN_SECONDS)

    def elapsed_seconds(self) -> float:
        """The run's wall time so far, summed over coordinator restarts."""
        return self.driver.recorder.elapsed_seconds()


def run_plan(config: RunConfig, service: ServiceConfig, fingerprint: str, run_id: str) -> RunPlan:
    """The plan every silo of the run trains with."""
    return RunPlan(
        run_id=run_id,
        federation=config.federation,
        task=config.task,
        label_names=config.label_names,
        lora=config.lora,
        training=config.training,
        privacy=config.privacy,
        chunk_bytes=service.transport.chunk_bytes,
        base_model_fingerprint=fingerprint,
    )


def _settings_record(config: RunConfig) -> dict[str, object]:
    """The run settings as they go into the results JSON."""
    return {
        "model_path": str(config.model_path),
        "task": config.task.value,
        "labels": list(config.label_names),
        "federation": asdict(config.federation),
        "rounds": asdict(config.rounds),
        "lora": asdict(config.lora),
        "privacy": asdict(config.privacy),
        "training": asdict(config.training),
    }
