"""What the operator can do with the federation: submit, list and cancel runs, shut the service down, and
see, control and export a run: the active run live, any other from its last checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aslora_coordinator.admin_queries import (
    RunFacts,
    history_view,
    ledger_view,
    observation_of_checkpoint,
    silo_views,
    status_view,
)
from aslora_coordinator.config import RunConfig, ServiceConfig
from aslora_coordinator.config_loader import parse_run_config, parse_run_text
from aslora_coordinator.errors import FederationError
from aslora_coordinator.export_format import ExportFormat
from aslora_coordinator.exporter import ExportedFile, card_facts, exported_files
from aslora_coordinator.global_model import GlobalModel
from aslora_coordinator.model_card import model_card
from aslora_coordinator.observation import RunObservation
from aslora_coordinator.orchestrator import Orchestrator
from aslora_coordinator.run_entry import RunEntry
from aslora_coordinator.run_queue import RunQueue
from aslora_coordinator.run_session import RunSession, run_plan
from aslora_coordinator.state import FederationStore
from aslora_coordinator.views import LedgerView, RunHistoryView, SiloView, StatusView
from aslora_core.config import ConfigError
from aslora_core.fingerprint import base_model_fingerprint
from aslora_core.results import RunResult
from aslora_core.tasks import make_task
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.messages import RunState

RESULTS_FOLDER = "results"
EXPORTS_FOLDER = "exports"
CANCEL_REASON = "cancelled by the operator"
EVICT_REASON = "evicted by the operator"


class FederationAdmin:
    """The admin operations over the run queue, the run being served and the runs' checkpoints."""

    def __init__(
        self,
        *,
        queue: RunQueue,
        store: FederationStore,
        work_dir: Path,
        base_dir: Path | None,
        service: ServiceConfig,
        active_session: Callable[[], RunSession | None],
        request_shutdown: Callable[[str], None],
    ) -> None:
        self._queue = queue
        self._store = store
        self._work_dir = work_dir
        self._base_dir = base_dir
        self._service = service
        self._active_session = active_session
        self._request_shutdown = request_shutdown

    # ---- runs ---------------------------------------------------------------------------------------------

    def submit(self, text: str, source: str) -> tuple[RunEntry, int]:
        """Queue a run from its TOML; the entry and how many runs are ahead of it. FederationError
        (INVALID_RUN) naming the problem when its settings are not valid."""
        try:
            config, values = parse_run_text(text, source or "the submitted run", self._base_dir)
            self._service.security.check_run(config.federation.secure_aggregation)
        except ConfigError as error:
            raise FederationError(ErrorCode.INVALID_RUN, str(error)) from error
        self._check_results_path(config)
        return self._queue.submit(source, values, config)

    def _check_results_path(self, config: RunConfig) -> None:
        """A run's results file is never overwritten: a path another run writes, or a file that exists,
        is refused."""
        path = config.evaluation.results_path if config.evaluation is not None else None
        if path is None:
            return
        claimed = {
            self.results_path(entry.run_id, self.run_config(entry)).resolve()
            for entry in self._queue.entries()
        }
        if path.exists() or path.resolve() in claimed:
            raise FederationError(
                ErrorCode.INVALID_RUN,
                f"[evaluation] results_path {path} exists or is another run's: name a new file, or leave "
                f"it out to write {RESULTS_FOLDER}/<run id>.json under the coordinator's state folder",
            )

    def run_config(self, entry: RunEntry) -> RunConfig:
        """The settings of a submitted run (validated when it was submitted)."""
        return parse_run_config(entry.settings, entry.source, self._base_dir)

    def results_path(self, run_id: str, config: RunConfig) -> Path:
        """Where the run's results file is written: its `[evaluation] results_path`, else
        `results/<run id>.json` in the coordinator's work folder."""
        if config.evaluation is not None and config.evaluation.results_path is not None:
            return config.evaluation.results_path
        return self._work_dir / RESULTS_FOLDER / f"{run_id}.json"

    def runs(self) -> list[RunEntry]:
        """Every submitted run, in submission order."""
        return self._queue.entries()

    def cancel(self, run_id: str, reason: str) -> RunState:
        """Cancel a queued run (it never starts) or the active one (it ends now, its partial results and
        every ledger kept); the run's state."""
        text = reason or CANCEL_REASON
        entry = self._queue.cancel_queued(run_id, text)
        session = self._active_session()
        if session is not None and session.run_id == run_id and not session.orchestrator.state.ended:
            session.orchestrator.stop(text, RunState.CANCELLED)
            return RunState.CANCELLED
        return entry.state

    def shutdown(self, reason: str) -> RunState | None:
        """Stop the service; the state of the active run, which resumes when the service starts again."""
        session = self._active_session()
        self._request_shutdown(reason)
        return None if session is None or session.orchestrator.state.ended else session.orchestrator.state

    # ---- one run ------------------------------------------------------------------------------------------

    def _entry(self, run_id: str) -> RunEntry:
        if run_id:
            return self._queue.get(run_id)
        latest = self._queue.active_or_latest()
        if latest is None:
            raise FederationError(ErrorCode.NO_ACTIVE_RUN, "no run has started yet")
        return latest

    def _live(self, entry: RunEntry) -> RunSession | None:
        session = self._active_session()
        return session if session is not None and session.run_id == entry.run_id else None

    def _facts(self, entry: RunEntry) -> RunFacts:
        config = self.run_config(entry)
        return RunFacts(
            run_id=entry.run_id,
            policy=entry.policy,
            task=entry.task,
            rounds_total=entry.rounds_total,
            privacy=config.privacy,
            budget=config.privacy_budget,
        )

    def _observe(self, entry: RunEntry) -> tuple[RunFacts, RunObservation]:
        facts = self._facts(entry)
        session = self._live(entry)
        if session is not None:
            return facts, session.orchestrator.observe()
        snapshot = self._store.checkpoints(entry.run_id).load()
        if snapshot is None:
            empty = RunObservation(entry.state, entry.reason, 0, None, None, None, (), ())
            return facts, empty
        return facts, observation_of_checkpoint(snapshot, entry.state, entry.reason, facts)

    def status(self, run_id: str) -> StatusView:
        """The run at a glance (default: the active or latest run)."""
        return status_view(*self._observe(self._entry(run_id)))

    def silos(self, run_id: str) -> list[SiloView]:
        """Every silo of the run, with the reason of those that declined it."""
        return silo_views(self._observe(self._entry(run_id))[1])

    def ledger(self, run_id: str) -> LedgerView:
        """The run's privacy ledger at the coordinator."""
        return ledger_view(*self._observe(self._entry(run_id)))

    def history(self, run_id: str) -> RunHistoryView:
        """The run's figures round by round (the active run's so far, another's from its last checkpoint;
        none before its first checkpoint)."""
        entry = self._entry(run_id)
        session = self._live(entry)
        if session is not None:
            return history_view(entry.run_id, session.driver.recorder.copy())
        snapshot = self._store.checkpoints(entry.run_id).load()
        if snapshot is None:
            return RunHistoryView(entry.run_id, None, None, [], [])
        return history_view(entry.run_id, RunResult.from_json(snapshot.results))

    def pause(self) -> RunState:
        """Let the active run's open round finish, then open no new one until `resume`."""
        return self._active().pause()

    def resume(self) -> RunState:
        """Undo `pause`."""
        return self._active().resume()

    def evict(self, silo_id: str, reason: str) -> RunState:
        """Take a silo out of the active run (no further task, no new registration); the run's state."""
        orchestrator = self._active()
        orchestrator.silo_desk.evict(silo_id, reason or EVICT_REASON)
        return orchestrator.state

    def _active(self) -> Orchestrator:
        session = self._active_session()
        if session is None or session.orchestrator.state.ended:
            raise FederationError(ErrorCode.NO_ACTIVE_RUN, "pause, resume and evict act on the active run")
        return session.orchestrator

    @contextmanager
    def export(self, run_id: str, export_format: ExportFormat) -> Iterator[list[ExportedFile]]:
        """The files of the run's global adapter (the active run's current one, or an ended run's last)."""
        entry = self._entry(run_id)
        session = self._live(entry)
        spool = self._work_dir / EXPORTS_FOLDER
        if session is not None:
            orchestrator, model = session.orchestrator, session.model
            card = model_card(card_facts(orchestrator.plan, orchestrator.observe()))
            with exported_files(
                orchestrator.global_state, lambda: model, card, spool, export_format
            ) as files:
                yield files
            return
        snapshot = self._store.checkpoints(entry.run_id).load()
        if snapshot is None:
            raise FederationError(ErrorCode.NO_ACTIVE_RUN, f"run {entry.run_id} has no adapter yet")
        config = self.run_config(entry)
        observed = self._observe(entry)[1]
        plan = run_plan(config, self._service, base_model_fingerprint(config.model_path), entry.run_id)
        card = model_card(card_facts(plan, observed))
        state = snapshot.global_state
        with exported_files(state, lambda: _model_of(config), card, spool, export_format) as files:
            yield files


def _model_of(config: RunConfig) -> GlobalModel:
    """The run's model, built again to export an ended run's adapter in PEFT form."""
    return GlobalModel(
        make_task(config.task),
        config.model_path,
        label_names=config.label_names,
        lora=config.lora,
        seed=config.federation.seed,
        evaluation=None,
    )
