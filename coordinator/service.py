"""`aslora coordinator serve`: build every part from the config, serve the run, shut down when it is over."""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict
from pathlib import Path

from aslora.v1 import admin_pb2_grpc, federation_pb2_grpc
from aslora_coordinator.admin_servicer import AdminServicer
from aslora_coordinator.config import CoordinatorConfig
from aslora_coordinator.federation_servicer import FederationServicer
from aslora_coordinator.global_model import GlobalModel
from aslora_coordinator.metrics import CountingHandlers
from aslora_coordinator.orchestrator import Orchestrator
from aslora_coordinator.results_recorder import ResultsRecorder
from aslora_coordinator.resume import check_resumable, config_fingerprint, restore
from aslora_coordinator.round_driver import RoundDriver
from aslora_coordinator.server import RunningServer, start_server
from aslora_coordinator.state import InMemoryStateStore, StateStore
from aslora_core.atomic_files import write_atomically
from aslora_core.fingerprint import base_model_fingerprint
from aslora_core.rounds import RoundEngine
from aslora_core.selection import make_policy
from aslora_core.tasks import make_task
from aslora_rpc.messages import RunPlan, RunState

LOGGER = logging.getLogger(__name__)
SHUTDOWN_GRACE_SECONDS = 3.0
"""Time calls in flight get at shutdown, so that waiting silos hear that the run ended."""
RUN_ID_BYTES = 6


class CoordinatorService:
    """One run: the global model, the orchestrator and its round driver, and the gRPC servers."""

    def __init__(
        self, config: CoordinatorConfig, work_dir: Path, *, insecure: bool, store: StateStore | None = None
    ) -> None:
        """Load the model and evaluation data, plan the run (or resume it from the store's checkpoint) and
        start serving (the driver starts too); CheckpointError when the checkpoint must not be resumed."""
        self.config = config
        self.store = store or InMemoryStateStore()
        fingerprint = base_model_fingerprint(config.model_path)
        run_fingerprint = config_fingerprint(config, fingerprint)
        checkpoint = self.store.load()
        if checkpoint is not None:
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
        run_id = checkpoint.run_id if checkpoint is not None else secrets.token_hex(RUN_ID_BYTES)
        self.orchestrator = Orchestrator(config, _run_plan(config, fingerprint, run_id), initial)
        score = federation.reported_score
        evaluation = config.evaluation
        recorder = ResultsRecorder(
            federation.policy,
            score,
            _settings_record(config),
            evaluation.results_path if evaluation else None,
        )
        engine = RoundEngine.for_federation(policy, initial, config.training, federation)
        if checkpoint is not None:
            restore(checkpoint, self.orchestrator, engine, recorder)
            LOGGER.info(
                "resuming run %s from its checkpoint (%d round(s) done)",
                checkpoint.run_id,
                checkpoint.rounds_completed,
            )
        self.driver = RoundDriver(
            orchestrator=self.orchestrator,
            engine=engine,
            model=self.model,
            recorder=recorder,
            store=self.store,
            spool_dir=work_dir / "adapters",
            config_fingerprint=run_fingerprint,
            resumed=checkpoint is not None,
        )
        if checkpoint is not None:
            self.driver.first_attempt = checkpoint.failed_attempts
        self.server: RunningServer = start_server(
            config.server,
            config.security,
            [
                lambda server: federation_pb2_grpc.add_FederationServicer_to_server(
                    FederationServicer(self._counted(), config.transport, work_dir / "uploads"), server
                ),
                lambda server: admin_pb2_grpc.add_AdminServicer_to_server(
                    AdminServicer(self.orchestrator, self.model, work_dir / "exports"), server
                ),
            ],
            insecure=insecure,
        )
        self.metrics_endpoint = self.orchestrator.metrics.serve(config.server.metrics)
        self._write_port_file()
        self.driver.start()
        self.server.health.set_serving(True)
        LOGGER.info(
            "coordinator of run %s serving on %s", self.orchestrator.plan.run_id, self.server.endpoint
        )

    def _write_port_file(self) -> None:
        path = self.config.server.port_file
        if path is None:
            return
        ports = {"grpc": self.server.endpoint.port, "health": self.server.health.endpoint.port}
        if self.metrics_endpoint is not None:
            ports["metrics"] = self.metrics_endpoint.endpoint.port
        write_atomically(path, json.dumps(ports).encode("utf-8"))

    def serve_until_done(self) -> RunState:
        """Serve the run; once it has ended, keep serving until stopped or lingered enough; then shut down."""
        orchestrator = self.orchestrator
        orchestrator.wait_ended()
        LOGGER.info(
            "run %s ended: %s (%s)", orchestrator.plan.run_id, orchestrator.state.value, orchestrator.reason
        )
        orchestrator.wait_stop_requested(self.config.server.linger_seconds)
        self.shutdown()
        return orchestrator.state

    def shutdown(self) -> None:
        """End the run if it is still going, and stop serving."""
        self.orchestrator.end(RunState.STOPPED, "the coordinator is shutting down")
        self.server.stop(SHUTDOWN_GRACE_SECONDS)
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()

    def _counted(self) -> CountingHandlers:
        """The orchestrator's silo-facing handlers, counting each update's outcome in the metrics."""
        return CountingHandlers(self.orchestrator, self.orchestrator.metrics)


def _run_plan(config: CoordinatorConfig, fingerprint: str, run_id: str) -> RunPlan:
    return RunPlan(
        run_id=run_id,
        federation=config.federation,
        task=config.task,
        label_names=config.label_names,
        lora=config.lora,
        training=config.training,
        privacy=config.privacy,
        chunk_bytes=config.transport.chunk_bytes,
        base_model_fingerprint=fingerprint,
    )


def _settings_record(config: CoordinatorConfig) -> dict[str, object]:
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
