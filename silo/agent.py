"""The silo agent's loop: for run after run, check the plan, register, then take tasks (run_tasks.py)
until the run ends."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc

from aslora_core.fingerprint import base_model_fingerprint
from aslora_core.round_numbers import round_number
from aslora_core.training.ranks import RankFailedError
from aslora_rpc.channels import open_channel
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.errors import error_code_of
from aslora_rpc.health import HealthEndpoint
from aslora_rpc.messages import Enrollment, RunEnd, RunPlan, RunState, Task
from aslora_rpc.preflight import Failed, PreflightError
from aslora_silo.client import CoordinatorClient
from aslora_silo.config import SiloConfig
from aslora_silo.ledger import SiloLedger
from aslora_silo.metrics import SiloMetrics
from aslora_silo.preflight import check_data_for_run
from aslora_silo.progress import TrainingProgress
from aslora_silo.registrar import Registrar
from aslora_silo.retry import Backoff
from aslora_silo.run_acceptance import RunDeclinedError, SiloIdentity, check_run
from aslora_silo.run_tasks import RunTasks
from aslora_silo.task_journal import TaskJournal
from aslora_silo.workspace import load_records

LOGGER = logging.getLogger(__name__)
LATE_CODES = frozenset({ErrorCode.ROUND_CLOSED, ErrorCode.UNKNOWN_TASK, ErrorCode.DUPLICATE_UPDATE})
"""Refusals that mean the round went on without this silo's update (or already has it)."""
HEARTBEAT_JOIN_SECONDS = 5.0
"""How long the agent waits for its heartbeat thread to end once the channel is closed."""


class SiloAgent:
    """One silo's agent: it takes part in the federation's runs, one after another."""

    def __init__(
        self,
        config: SiloConfig,
        state_dir: Path,
        *,
        insecure: bool,
        progress: TrainingProgress | None = None,
    ) -> None:
        """Read the base model's fingerprint and the dataset size; nothing is sent yet."""
        self.config = config
        self.state_dir = state_dir
        self.insecure = insecure
        self.fingerprint = base_model_fingerprint(config.model_path)
        self.dataset_size = len(load_records(config.task, config.data, None, state_dir))
        self.identity = SiloIdentity(
            self.fingerprint,
            config.task,
            self.dataset_size,
            evaluates=config.answers_evaluation,
        )
        self.ledger = SiloLedger(state_dir, config.privacy)
        if config.privacy.max_delta > 1 / self.dataset_size:
            LOGGER.warning(
                "silo %s: max_delta %g is above 1/N = 1/%d; the rule of thumb is delta well below 1/N (a "
                "mechanism may otherwise release a whole record with probability delta)",
                config.name,
                config.privacy.max_delta,
                self.dataset_size,
            )
        self.journal = TaskJournal(state_dir)
        self.registrar = Registrar(config.name, self.fingerprint, self.dataset_size)
        self.run_tasks: RunTasks | None = None
        """The tasks of the latest run this silo registered in (None before it registers in one)."""
        self.progress = progress
        self.metrics = SiloMetrics()
        self.metrics_endpoint = self.metrics.serve(config.metrics, state_dir)

    def close(self) -> None:
        """Stop serving metrics (they outlive `run`, so that a last scrape sees the final figures)."""
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()

    def run(self, max_runs: int | None = None) -> RunEnd | None:
        """Serve health, then take part in run after run: fetch the plan of the run being served, check it
        against this silo's own rules (declining the run, with the reason, when it breaks one), register
        and work until the run ends; stop after `max_runs` runs (None: never). The end of the last run, if
        any; SiloError when the coordinator refuses this silo."""
        connection = self.config.connection
        health = HealthEndpoint(self.config.health)
        health.set_serving(True)
        channel = open_channel(
            connection.coordinator,
            connection.tls,
            insecure=self.insecure,
            server_name=connection.tls_server_name,
        )
        backoff = Backoff(
            connection.initial_backoff_seconds,
            connection.max_backoff_seconds,
            connection.give_up_after_seconds,
        )
        client = CoordinatorClient(channel, backoff)
        last: RunEnd | None = None
        after = ""
        runs = 0
        try:
            while max_runs is None or runs < max_runs:
                plan = self._next_plan(client, after)
                after = plan.run_id
                end = self._take_part(client, plan)
                if end is not None:
                    last, runs = end, runs + 1
        finally:
            channel.close()
            health.stop()
        return last

    def _next_plan(self, client: CoordinatorClient, after: str) -> RunPlan:
        """The plan of the next run the coordinator serves (not `after`), waiting as long as it takes."""
        LOGGER.info(
            "silo %s waiting for the coordinator at %s to serve a run",
            self.config.name,
            self.config.connection.coordinator,
        )
        while True:
            plan = client.get_run(after, self.config.connection.wait_seconds)
            if plan is not None:
                return plan

    def _take_part(self, client: CoordinatorClient, plan: RunPlan) -> RunEnd | None:
        """Check the run, then register and work in it, or decline it; None when the run is no longer
        served by the time this silo registers (it then fetches the current one)."""
        try:
            forecast = check_run(
                plan, self.identity, self.config.acceptance, self.config.privacy, self.ledger.snapshot()
            )
        except RunDeclinedError as decline:
            LOGGER.warning("silo %s declines run %s: %s", self.config.name, plan.run_id, decline)
            self.registrar.decline(client, plan, str(decline), self.ledger.spent())
            return RunEnd(state=RunState.STOPPED, reason=f"this silo declined the run: {decline}")
        # Its own base model and task match the run (check_run): read its data against the run's labels.
        data = check_data_for_run(self.config, plan, self.state_dir)
        if isinstance(data, Failed):
            # This silo's own data is at fault, not the run: the operator sees why it is out, and the
            # institution gets the fix (the process ends as a preflight does, exit 2).
            LOGGER.error(
                "silo %s cannot take part in run %s: %s", self.config.name, plan.run_id, data.problem
            )
            # The reason names the line, not where the file lives on this machine.
            reason = data.problem.replace(str(self.config.data.train_path), "the training file")
            self.registrar.decline(client, plan, f"data: {reason}", self.ledger.spent())
            raise PreflightError(data)
        LOGGER.info(
            "silo %s accepts run %s (%s): %s",
            self.config.name,
            plan.run_id,
            plan.federation.policy,
            forecast.summary(),
        )
        try:
            enrollment = self.registrar.register(client, plan)
        except grpc.RpcError as error:
            if error_code_of(error) is ErrorCode.RUN_CHANGED:
                LOGGER.info("silo %s: run %s is no longer served", self.config.name, plan.run_id)
                return None
            raise
        self.ledger.begin_run(plan.run_id)
        tasks = RunTasks(
            self.config,
            self.state_dir,
            client,
            dataset_size=self.dataset_size,
            ledger=self.ledger,
            journal=self.journal,
            metrics=self.metrics,
            progress=self.progress,
        )
        self.run_tasks = tasks
        self.metrics.epsilon.set(self.ledger.spent())
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeats, args=(client, enrollment, stop), daemon=True)
        heartbeat.start()
        try:
            return self._work(client, tasks, enrollment)
        finally:
            stop.set()
            tasks.close()
            # A thread still inside a gRPC call when the interpreter exits aborts the process.
            heartbeat.join(HEARTBEAT_JOIN_SECONDS)

    def _heartbeats(self, client: CoordinatorClient, enrollment: Enrollment, stop: threading.Event) -> None:
        while not stop.wait(self.config.connection.heartbeat_seconds):
            try:
                client.heartbeat(enrollment.silo_id, enrollment.plan.run_id, self.ledger.spent())
            except grpc.RpcError as error:
                LOGGER.debug("heartbeat failed: %s", error)

    def _work(self, client: CoordinatorClient, tasks: RunTasks, enrollment: Enrollment) -> RunEnd:
        """Take the run's tasks until it ends or this silo must leave it."""
        silo_id = enrollment.silo_id
        while True:
            try:
                outcome = client.wait_for_task(
                    silo_id, enrollment.plan.run_id, self.config.connection.wait_seconds
                )
                if isinstance(outcome, RunEnd):
                    LOGGER.info(
                        "run %s ended: %s (%s)", enrollment.plan.run_id, outcome.state.value, outcome.reason
                    )
                    return outcome
                if isinstance(outcome, Task):
                    try:
                        stop_reason = tasks.do_task(enrollment, outcome)
                    except RankFailedError as failure:
                        enrollment = self._rejoin_after_failure(client, enrollment, outcome, failure)
                        continue
                    if stop_reason is not None:
                        LOGGER.warning(
                            "silo %s leaves run %s: %s", silo_id, enrollment.plan.run_id, stop_reason
                        )
                        return RunEnd(state=RunState.STOPPED, reason=stop_reason)
            except grpc.RpcError as error:
                code = error_code_of(error)
                if code is ErrorCode.UNKNOWN_SILO:
                    enrollment = self.registrar.register_again(client, enrollment)
                    continue
                if code is ErrorCode.NOT_HANDED_OUT:
                    # A restarted coordinator reopened the round but has not handed this silo its task
                    # again yet; taking the task again finds its update in the journal and sends that.
                    LOGGER.warning("silo %s: sent before the task was handed out again", silo_id)
                    continue
                if code not in LATE_CODES:
                    raise
                # The round went on without this silo (e.g. closed at its deadline): wait for the next task.
                LOGGER.warning("silo %s: task overtaken by the round (%s)", silo_id, code)

    def _rejoin_after_failure(
        self, client: CoordinatorClient, enrollment: Enrollment, task: Task, failure: RankFailedError
    ) -> Enrollment:
        """A training rank died, hung or failed in the task's round: tell the coordinator why (the round
        goes on without this silo), then register again, so that the next round has this silo (its ranks
        start again). The round stays charged, as it was before any record was read, and the journal keeps
        it as charged but not finished: a task handed out again is trained again, charged once."""
        silo_id = enrollment.silo_id
        LOGGER.error("silo %s: round %d failed: %s", silo_id, round_number(task.round_index), failure)
        client.decline(silo_id, task.task_id, f"the silo's training failed: {failure}", self.ledger.spent())
        return self.registrar.register(client, enrollment.plan)
