"""`aslora coordinator serve`: the federation service. It serves the silo-facing and admin services, keeps
the run queue, and serves the submitted runs one after another until it is shut down."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from aslora.v1 import admin_pb2_grpc, federation_pb2_grpc
from aslora_coordinator.admin_servicer import AdminServicer
from aslora_coordinator.config import CoordinatorConfig
from aslora_coordinator.event_log import EventKind, EventLog
from aslora_coordinator.federation_admin import FederationAdmin
from aslora_coordinator.federation_servicer import FederationServicer
from aslora_coordinator.metrics import CoordinatorMetrics, CountingHandlers
from aslora_coordinator.orchestrator import Orchestrator
from aslora_coordinator.run_entry import RunEntry
from aslora_coordinator.run_queue import RunQueue
from aslora_coordinator.run_router import RunRouter
from aslora_coordinator.run_session import RunSession
from aslora_coordinator.server import RunningServer, start_server
from aslora_coordinator.state import CheckpointError, FederationStore, InMemoryFederationStore
from aslora_core.atomic_files import write_atomically
from aslora_rpc.messages import RunState

LOGGER = logging.getLogger(__name__)
SHUTDOWN_GRACE_SECONDS = 3.0
"""Time calls in flight get at shutdown, so that waiting silos hear the answer to their call."""
PROGRESS_SECONDS = 2.0
"""How often the run queue's file is brought up to date with the active run (its wall time is carried
across restarts to within this)."""
QUEUE_POLL_SECONDS = 0.5
"""How often a service waiting for a submission checks whether it is shutting down."""
RUNS_WORK_FOLDER = "runs"
CONFIG_SOURCE = "the coordinator's config"
"""The source of the run a coordinator's config holds."""


class CoordinatorService:
    """The gRPC servers, the run queue, and the run being served."""

    def __init__(
        self,
        config: CoordinatorConfig,
        work_dir: Path,
        *,
        insecure: bool,
        store: FederationStore | None = None,
    ) -> None:
        """Read the queue from the store (the config's run is submitted first when the queue is empty),
        start the servers, and start serving the first run that has not ended (resumed from its checkpoint);
        CheckpointError when the queue or that run's checkpoint must not be used."""
        self.config = config
        self.work_dir = work_dir
        self.store = store or InMemoryFederationStore()
        self.queue = RunQueue(self.store)
        self._submit_configured_run()
        self.metrics = CoordinatorMetrics()
        self.events = EventLog()
        self.router = RunRouter(self.queue, config.service.server.max_wait_seconds)
        self.metrics.silos_connected.set_function(self._connected_silos)
        self._shutdown = threading.Event()
        self._session: RunSession | None = None
        self._session_lock = threading.Lock()
        self.admin = FederationAdmin(
            queue=self.queue,
            store=self.store,
            work_dir=work_dir,
            base_dir=config.base_dir,
            service=config.service,
            active_session=lambda: self.session,
            request_shutdown=self.request_shutdown,
        )
        first = self._open_next_run(timeout=0.0)
        self.server: RunningServer = start_server(
            config.service.server,
            config.service.security,
            [
                lambda server: federation_pb2_grpc.add_FederationServicer_to_server(
                    FederationServicer(
                        CountingHandlers(self.router, self.metrics),
                        config.service.transport,
                        work_dir / "uploads",
                    ),
                    server,
                ),
                lambda server: admin_pb2_grpc.add_AdminServicer_to_server(
                    AdminServicer(self.admin, config.service.transport.chunk_bytes, self.events), server
                ),
            ],
            insecure=insecure,
        )
        self.metrics_endpoint = self.metrics.serve(config.service.server.metrics)
        self._write_port_file()
        self._runs_thread = threading.Thread(
            target=self._serve_runs, args=(first,), name="run-queue", daemon=True
        )
        self._runs_thread.start()
        self.server.health.set_serving(True)
        self._announce("", EventKind.LISTENING, f"coordinator listening on {self.server.endpoint}")

    # ---- the run being served ----------------------------------------------------------------------------

    @property
    def session(self) -> RunSession | None:
        """The run being served, or else the latest this process served (ended), if any."""
        with self._session_lock:
            return self._session

    @property
    def orchestrator(self) -> Orchestrator:
        """The orchestrator of the run being served, or of the latest run served (LookupError before the
        first)."""
        session = self.session
        if session is None:
            raise LookupError("no run has been served")
        return session.orchestrator

    def _connected_silos(self) -> int:
        """Silos of the current (or latest) run heard from within the heartbeat timeout."""
        session = self.session
        return 0 if session is None else session.orchestrator.connected_silos()

    def _submit_configured_run(self) -> None:
        """The config's run becomes the first submitted run; a restart finds it in the queue, where its
        settings must still be the config's (CheckpointError otherwise: a run is never changed midway)."""
        run = self.config.run
        if run is None:
            return
        entries = self.queue.entries()
        if entries:
            first = entries[0]
            if first.source == CONFIG_SOURCE and first.settings != self.config.run_values:
                raise CheckpointError(
                    f"run {first.run_id} was submitted from this coordinator's config with another run "
                    "configuration; restore that config, or start with an empty --state-dir (new runs are "
                    "submitted with `aslora coordinator submit`)"
                )
            return
        entry, _ = self.queue.submit(CONFIG_SOURCE, self.config.run_values, run)
        LOGGER.info("run %s submitted from the coordinator's config", entry.run_id)

    def _open_next_run(self, timeout: float | None) -> RunSession | None:
        """Build the next run to serve (waiting up to `timeout` for one) and start it; a run that cannot be
        built fails with the reason, and the next one is tried."""
        give_up = None if timeout is None else time.monotonic() + timeout
        while not self._shutdown.is_set():
            remaining = QUEUE_POLL_SECONDS if give_up is None else give_up - time.monotonic()
            entry = self.queue.next_to_serve(max(min(remaining, QUEUE_POLL_SECONDS), 0.0))
            if self._shutdown.is_set():
                return None
            if entry is None:
                if give_up is not None and time.monotonic() >= give_up:
                    return None
                continue
            try:
                session = self._build(entry)
            except CheckpointError:
                # A checkpoint that must not be resumed (unreadable, another configuration) is the
                # operator's to look at: the service refuses to start, the run stays resumable.
                raise
            except Exception as error:
                LOGGER.exception("run %s cannot start", entry.run_id)
                self.queue.ended(entry.run_id, RunState.FAILED, f"cannot start: {error}")
                continue
            self.queue.started(entry.run_id)
            with self._session_lock:
                self._session = session
            self.router.activate(session.orchestrator)
            session.start()
            if session.resumed_after is None:
                self._announce(
                    entry.run_id, EventKind.RUN_STARTED, f"run started ({entry.policy}, {entry.task})"
                )
            else:
                self._announce(
                    entry.run_id,
                    EventKind.RUN_RESUMED,
                    f"resuming run from its checkpoint after {session.resumed_after} round(s) "
                    f"({entry.policy}, {entry.task})",
                )
            return session
        return None

    def _build(self, entry: RunEntry) -> RunSession:
        config = self.admin.run_config(entry)
        run_dir = self.work_dir / RUNS_WORK_FOLDER / entry.run_id
        results = self.admin.results_path(entry.run_id, config)
        return RunSession(
            entry.run_id,
            config,
            self.config.service,
            store=self.store.checkpoints(entry.run_id),
            work_dir=run_dir,
            results_path=results,
            metrics=self.metrics,
            events=self.events,
        )

    def _serve_runs(self, first: RunSession | None) -> None:
        """Serve runs one after another until shut down (or, with a linger time, until the queue has been
        empty that long)."""
        session = first
        linger = self.config.service.server.linger_seconds
        while not self._shutdown.is_set():
            if session is None:
                try:
                    session = self._open_next_run(timeout=linger)
                except CheckpointError:
                    LOGGER.exception("a run's checkpoint must not be resumed; shutting down")
                    self._shutdown.set()
                    break
                if session is None:
                    if linger is not None and not self._shutdown.is_set():
                        LOGGER.info("no run to serve for %gs; shutting down", linger)
                        self._shutdown.set()
                    break
            self._follow(session)
            session = None

    def _follow(self, session: RunSession) -> None:
        """Keep the queue's entry of the run up to date until the run ends (or the service shuts down)."""
        orchestrator = session.orchestrator
        while not orchestrator.wait_ended(PROGRESS_SECONDS):
            self._note_progress(session)
            if self._shutdown.is_set():
                return
        session.join()
        self._note_progress(session)
        entry = self.queue.ended(session.run_id, orchestrator.state, orchestrator.reason)
        self._announce(entry.run_id, EventKind.RUN_ENDED, f"run ended: {entry.state.value} ({entry.reason})")
        self.router.deactivate()

    def _note_progress(self, session: RunSession) -> None:
        observed = session.orchestrator.observe()
        epsilon = max((silo.epsilon_recomputed for silo in observed.silos), default=0.0)
        self.queue.progress(
            session.run_id, observed.state, observed.rounds_completed, epsilon, session.elapsed_seconds()
        )

    # ---- serving and shutting down -----------------------------------------------------------------------

    def _write_port_file(self) -> None:
        path = self.config.service.server.port_file
        if path is None:
            return
        ports = {"grpc": self.server.endpoint.port, "health": self.server.health.endpoint.port}
        if self.metrics_endpoint is not None:
            ports["metrics"] = self.metrics_endpoint.endpoint.port
        write_atomically(path, json.dumps(ports).encode("utf-8"))

    def _announce(self, run_id: str, kind: EventKind, message: str) -> None:
        """A lifecycle event of the service (or of a run, by id): logged at INFO and kept in the event log."""
        LOGGER.info("%s%s", f"run {run_id}: " if run_id else "", message)
        self.events.append(run_id, kind, message)

    def request_shutdown(self, reason: str) -> None:
        """Stop the service: the active run is left to resume when the service starts again."""
        if not self._shutdown.is_set():
            self._announce("", EventKind.SHUTTING_DOWN, f"shutting down: {reason or 'requested'}")
        self._shutdown.set()
        session = self.session
        if session is not None:
            session.orchestrator.suspend()

    def serve_until_shutdown(self) -> RunState | None:
        """Serve until shut down; the state of the latest run that ended, if any."""
        self._shutdown.wait()
        self._runs_thread.join()
        self.shutdown()
        latest = self.queue.active_or_latest()
        return None if latest is None or not latest.state.ended else latest.state

    def shutdown(self) -> None:
        """Suspend the active run (it resumes on a restart) and stop serving."""
        self.request_shutdown("the coordinator is shutting down")
        session = self.session
        if session is not None:
            session.join()
            self._note_progress(session)
        self.events.close()
        self.server.stop(SHUTDOWN_GRACE_SECONDS)
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
