"""The silo agent's loop: for run after run, check the plan, register, then take tasks (download, check,
train, upload) until the run ends."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import grpc

from aslora_core.adapters import AdapterError
from aslora_core.fingerprint import base_model_fingerprint
from aslora_core.payload_files import state_from_file
from aslora_core.privacy import PrivacyAccountant
from aslora_core.privacy.planning import expected_sample_rate
from aslora_core.round_numbers import round_number
from aslora_core.serialization import SerializationError, update_to_bytes
from aslora_core.training.ranks import LEAD_RANK, RankFailedError
from aslora_rpc.channels import open_channel
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.errors import error_code_of
from aslora_rpc.health import HealthEndpoint
from aslora_rpc.messages import (
    Enrollment,
    Registration,
    RunDecline,
    RunEnd,
    RunPlan,
    RunState,
    Task,
    UploadAnnouncement,
)
from aslora_rpc.preflight import Failed, PreflightError
from aslora_rpc.protocol import PROTOCOL_VERSION, is_compatible
from aslora_rpc.secure_aggregation.errors import SecureAggregationError
from aslora_rpc.transfer import SpooledPayload
from aslora_silo.client import CoordinatorClient
from aslora_silo.config import SiloConfig
from aslora_silo.errors import SiloError
from aslora_silo.evaluation_release import SiloEvaluator, answer_evaluation_task, evaluation_refusal
from aslora_silo.ledger import SiloLedger
from aslora_silo.metrics import SiloMetrics
from aslora_silo.preflight import check_data_for_run
from aslora_silo.progress import TrainingProgress
from aslora_silo.rank_worker import ReplicaSpec
from aslora_silo.retry import Backoff
from aslora_silo.run_acceptance import RunDeclinedError, SiloIdentity, check_run
from aslora_silo.secure_round import SecureTask, peer_trust
from aslora_silo.stall_point import maybe_stall
from aslora_silo.task_checks import (
    RunRefusedError,
    TaskRefusedError,
    check_adapter,
    check_selection,
    check_task,
)
from aslora_silo.task_journal import JournalEntry, TaskJournal
from aslora_silo.training_ranks import TrainingRanks
from aslora_silo.workspace import Workspace, load_records

LOGGER = logging.getLogger(__name__)
REFUSALS = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT})
"""Registration errors that retrying cannot fix."""
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
        self.workspace: Workspace | None = None
        """Built once a run's first task passes the privacy checks; never for a refused plan or task."""
        self.evaluator: SiloEvaluator | None = None
        """The evaluation split, encoded for a run's first evaluation task this silo releases."""
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
            self._decline(client, plan, str(decline))
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
            self._decline(client, plan, f"data: {reason}")
            raise PreflightError(data)
        LOGGER.info(
            "silo %s accepts run %s (%s): %s",
            self.config.name,
            plan.run_id,
            plan.federation.policy,
            forecast.summary(),
        )
        try:
            enrollment = self._register(client, plan)
        except grpc.RpcError as error:
            if error_code_of(error) is ErrorCode.RUN_CHANGED:
                LOGGER.info("silo %s: run %s is no longer served", self.config.name, plan.run_id)
                return None
            raise
        self.ledger.begin_run(plan.run_id)
        self.workspace, self.evaluator = None, None
        self.metrics.epsilon.set(self.ledger.spent())
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeats, args=(client, enrollment, stop), daemon=True)
        heartbeat.start()
        try:
            return self._work(client, enrollment)
        finally:
            stop.set()
            if self.workspace is not None:
                self.workspace.close()  # its other training ranks, if any, end with the run
            # A thread still inside a gRPC call when the interpreter exits aborts the process.
            heartbeat.join(HEARTBEAT_JOIN_SECONDS)

    def _decline(self, client: CoordinatorClient, plan: RunPlan, reason: str) -> None:
        """Tell the coordinator this silo does not take part in the run, and why (the operator sees it)."""
        try:
            client.decline_run(RunDecline(self.config.name, plan.run_id, reason, self.ledger.spent()))
        except grpc.RpcError as error:
            if error_code_of(error) is not ErrorCode.RUN_CHANGED:
                raise

    def _register(self, client: CoordinatorClient, plan: RunPlan) -> Enrollment:
        """Register in the run whose plan this silo checked; the coordinator must enroll it under that very
        plan."""
        registration = Registration(
            PROTOCOL_VERSION, self.config.name, self.fingerprint, self.dataset_size, plan.run_id
        )
        try:
            enrollment = client.register(registration)
        except grpc.RpcError as error:
            if (
                isinstance(error, grpc.Call)
                and error.code() in REFUSALS
                and error_code_of(error) is not ErrorCode.RUN_CHANGED
            ):
                raise SiloError(f"the coordinator refused this silo: {error.details()}") from error
            raise
        if not is_compatible(enrollment.protocol_version):
            raise SiloError(
                f"the coordinator speaks protocol {enrollment.protocol_version}, this silo {PROTOCOL_VERSION}"
            )
        if enrollment.plan != plan:
            # Checked before registering: a run enrolling this silo under another plan is not the run it
            # accepted (its privacy or its sampling could differ from what was checked).
            raise SiloError(f"the coordinator enrolled this silo in run {plan.run_id} under another plan")
        LOGGER.info("silo %s registered in run %s", enrollment.silo_id, plan.run_id)
        return enrollment

    def _heartbeats(self, client: CoordinatorClient, enrollment: Enrollment, stop: threading.Event) -> None:
        while not stop.wait(self.config.connection.heartbeat_seconds):
            try:
                client.heartbeat(enrollment.silo_id, enrollment.plan.run_id, self.ledger.spent())
            except grpc.RpcError as error:
                LOGGER.debug("heartbeat failed: %s", error)

    def _workspace_for(self, enrollment: Enrollment) -> Workspace:
        """The run's model, data and trainer, built when the first task has passed the privacy checks (on
        several devices, this process is the lead rank; the other ranks start with the first round)."""
        if self.workspace is None:
            spec = ReplicaSpec(
                silo_id=enrollment.silo_id,
                model_path=self.config.model_path,
                data=self.config.data,
                compute=self.config.compute,
                privacy=self.config.privacy,
                plan=enrollment.plan,
                state_dir=self.state_dir,
                delta=self.ledger.delta,
            )
            ranks = TrainingRanks(spec, self.config.ranks) if self.config.ranks.devices > 1 else None
            self.workspace = spec.workspace(LEAD_RANK, self.ledger, ranks)
        return self.workspace

    def _work(self, client: CoordinatorClient, enrollment: Enrollment) -> RunEnd:
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
                        stop_reason = self._do_task(client, enrollment, outcome)
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
                    enrollment = self._register_again(client, enrollment)
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
        return self._register(client, enrollment.plan)

    def _register_again(self, client: CoordinatorClient, enrollment: Enrollment) -> Enrollment:
        """The coordinator restarted and lost this silo's registration: register again, in the same run
        (a resumed run keeps its id, and its model, labels, LoRA, privacy and training settings)."""
        LOGGER.warning(
            "silo %s: the coordinator does not know this silo (restarted?); registering again",
            enrollment.silo_id,
        )
        try:
            return self._register(client, enrollment.plan)
        except SiloError as error:
            raise SiloError(f"on registering again after a coordinator restart: {error}") from error

    def _do_task(self, client: CoordinatorClient, enrollment: Enrollment, task: Task) -> str | None:
        """Train and send the task's update (or send again the one kept for it), or decline it; the reason
        this silo must stop, if any."""
        silo_id = enrollment.silo_id
        if task.evaluate:
            self._answer_evaluation(client, enrollment, task)
            return None
        charged = self.journal.entry_for(enrollment.plan.run_id, task.task_id)
        if charged is not None:
            kept = self.journal.finished_update(charged)
            if kept is not None:
                LOGGER.info(
                    "silo %s: round %d was trained already; sending its kept update",
                    silo_id,
                    round_number(task.round_index),
                )
                if task.secure_aggregation is None:
                    self._send(client, enrollment, task, kept)
                else:
                    self._resend_masked(client, enrollment, task)
                return None
        before = (
            PrivacyAccountant.from_dict(charged.ledger_before, self.config.privacy.accountant)
            if charged is not None
            else self.ledger.snapshot()
        )
        try:
            check_task(
                task,
                plan=enrollment.plan,
                sample_rate=expected_sample_rate(enrollment.plan.training.batch_size, self.dataset_size),
                accountant=before,
                privacy=self.config.privacy,
            )
            workspace = self._workspace_for(enrollment)
            check_selection(task, workspace.layer_names)
            spooled = client.download_adapter(
                silo_id, task.task_id, task.adapter, self.state_dir / "downloads"
            )
            try:
                global_state = state_from_file(spooled.path)
            finally:
                spooled.path.unlink(missing_ok=True)
            check_adapter(global_state, workspace.template)
            secure = (
                None if task.secure_aggregation is None else self._secure_exchange(client, enrollment, task)
            )
        except (TaskRefusedError, SerializationError, SecureAggregationError) as refusal:
            LOGGER.warning("silo %s declines round %d: %s", silo_id, round_number(task.round_index), refusal)
            client.decline(silo_id, task.task_id, str(refusal), self.ledger.spent())
            return str(refusal) if isinstance(refusal, RunRefusedError) else None
        if charged is None:
            charged = JournalEntry(enrollment.plan.run_id, task.task_id, task.round_index, before.to_dict())
            self.journal.begin(charged)
        else:
            LOGGER.info(
                "silo %s: round %d was charged but not finished; training it again",
                silo_id,
                round_number(task.round_index),
            )
            self.ledger.rewind(before)
        started = time.perf_counter()
        try:
            if self.progress is not None:
                self.progress.round_started(task.round_index, task.local_steps)
            result = workspace.train(
                task.round_index,
                global_state,
                task.selection,
                task.noise_multiplier,
                self.progress.step_done if self.progress is not None else None,
            )
        except AdapterError as error:
            client.decline(
                silo_id,
                task.task_id,
                f"the global adapter does not fit the model: {error}",
                self.ledger.spent(),
            )
            return None
        self.metrics.round_trained(result, time.perf_counter() - started, self.ledger.spent())
        # The loss is on this silo's private batches: shown here, never sent.
        LOGGER.info(
            "silo %s: round %d trained (%d steps), local training loss %.4f, epsilon %.4f",
            silo_id,
            round_number(task.round_index),
            result.steps,
            result.mean_loss,
            self.ledger.spent(),
        )
        if self.progress is not None:
            self.progress.round_finished(task.round_index, self.ledger.spent())
        update = self.journal.finish(charged, update_to_bytes(result.update))
        maybe_stall(task.round_index)
        if secure is None:
            self._send(client, enrollment, task, update)
            return None
        try:
            masked = secure.masked_upload(result.update, global_state, task.selection)
            self._send(client, enrollment, task, masked, masked=True)
            secure.answer_unmasking()
        except SecureAggregationError as refusal:
            self._decline_secure(client, enrollment, task, refusal)
        return None

    def _secure_exchange(self, client: CoordinatorClient, enrollment: Enrollment, task: Task) -> SecureTask:
        """The task's secure-aggregation round at this silo, its keys and shares exchanged."""
        tls = self.config.connection.tls
        if tls is None:
            raise SecureAggregationError(
                "secure aggregation signs round keys with the silo's certificate: [tls]"
            )
        secure = SecureTask(
            client,
            run_id=enrollment.plan.run_id,
            silo_id=enrollment.silo_id,
            task=task,
            tls=tls,
            trust=peer_trust(tls, self.config.name, self.config.peers),
            state_dir=self.state_dir,
            wait_seconds=self.config.connection.wait_seconds,
        )
        secure.exchange()
        return secure

    def _resend_masked(self, client: CoordinatorClient, enrollment: Enrollment, task: Task) -> None:
        """A secure task trained before a coordinator restart: the same keys, the same masked update."""
        try:
            secure = self._secure_exchange(client, enrollment, task)
            masked = secure.kept_upload()
            if masked is None:
                raise SecureAggregationError("the update of this task was trained but never masked")
            self._send(client, enrollment, task, masked, masked=True)
            secure.answer_unmasking()
        except SecureAggregationError as refusal:
            self._decline_secure(client, enrollment, task, refusal)

    def _decline_secure(
        self, client: CoordinatorClient, enrollment: Enrollment, task: Task, refusal: SecureAggregationError
    ) -> None:
        """A secure-aggregation step this silo refuses (the participant logged why): decline the task."""
        LOGGER.warning(
            "silo %s declines round %d: secure aggregation: %s",
            enrollment.silo_id,
            round_number(task.round_index),
            refusal,
        )
        client.decline(
            enrollment.silo_id, task.task_id, f"secure aggregation: {refusal}", self.ledger.spent()
        )

    def _answer_evaluation(self, client: CoordinatorClient, enrollment: Enrollment, task: Task) -> None:
        """Release the evaluation of the task's adapter, or decline it (silo/evaluation_release.py)."""
        evaluator: SiloEvaluator | str | None = evaluation_refusal(
            enrollment.plan, self.config.data, self.config.privacy
        )
        if evaluator is None:
            if self.evaluator is None:
                self.evaluator = SiloEvaluator(
                    self._workspace_for(enrollment),
                    self.config.data,
                    self.config.privacy,
                    self.ledger,
                    self.state_dir,
                )
            evaluator = self.evaluator
        answer_evaluation_task(
            client,
            task,
            silo_id=enrollment.silo_id,
            evaluator=evaluator,
            ledger=self.ledger,
            downloads=self.state_dir / "downloads",
        )
        self.metrics.epsilon.set(self.ledger.spent())

    def _send(
        self,
        client: CoordinatorClient,
        enrollment: Enrollment,
        task: Task,
        update: SpooledPayload,
        *,
        masked: bool = False,
    ) -> None:
        """Upload the task's update (`masked`: its masked form) from its kept file (which stays until the
        next task replaces it)."""
        announcement = UploadAnnouncement(
            enrollment.silo_id, task.task_id, update.info, self.ledger.spent(), masked=masked
        )
        client.upload_update(announcement, update, enrollment.plan.chunk_bytes)
        LOGGER.info(
            "silo %s: round %d sent, epsilon %.4f",
            enrollment.silo_id,
            round_number(task.round_index),
            announcement.epsilon_spent,
        )
