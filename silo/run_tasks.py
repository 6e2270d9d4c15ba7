"""One run's tasks at this silo: check a round's task, train and send its update (or send again the one
kept for it), take part in its secure round, release an evaluation, or decline."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from aslora_core.adapters import AdapterError
from aslora_core.payload_files import state_from_file
from aslora_core.privacy import PrivacyAccountant
from aslora_core.privacy.planning import expected_sample_rate
from aslora_core.round_numbers import round_number
from aslora_core.serialization import SerializationError, update_to_bytes
from aslora_core.training.ranks import LEAD_RANK
from aslora_rpc.messages import Enrollment, Task, UploadAnnouncement
from aslora_rpc.secure_aggregation.errors import SecureAggregationError
from aslora_rpc.transfer import SpooledPayload
from aslora_silo.client import CoordinatorClient
from aslora_silo.config import SiloConfig
from aslora_silo.evaluation_release import SiloEvaluator, answer_evaluation_task, evaluation_refusal
from aslora_silo.ledger import SiloLedger
from aslora_silo.metrics import SiloMetrics
from aslora_silo.progress import TrainingProgress
from aslora_silo.rank_worker import ReplicaSpec
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
from aslora_silo.workspace import Workspace

LOGGER = logging.getLogger(__name__)


class RunTasks:
    """Does the tasks of one run this silo registered in; `close` at the run's end."""

    def __init__(
        self,
        config: SiloConfig,
        state_dir: Path,
        client: CoordinatorClient,
        *,
        dataset_size: int,
        ledger: SiloLedger,
        journal: TaskJournal,
        metrics: SiloMetrics,
        progress: TrainingProgress | None,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.client = client
        self.dataset_size = dataset_size
        self.ledger = ledger
        self.journal = journal
        self.metrics = metrics
        self.progress = progress
        self.workspace: Workspace | None = None
        """Built once the run's first task passes the privacy checks; never for a refused task."""
        self.evaluator: SiloEvaluator | None = None
        """The evaluation split, encoded for the run's first evaluation task this silo releases."""

    def close(self) -> None:
        """End the run's workspace, if one was built (its other training ranks, if any, end with it)."""
        if self.workspace is not None:
            self.workspace.close()

    def do_task(self, enrollment: Enrollment, task: Task) -> str | None:
        """Train and send the task's update (or send again the one kept for it), or decline it; the reason
        this silo must stop, if any."""
        client = self.client
        silo_id = enrollment.silo_id
        if task.evaluate:
            self._answer_evaluation(enrollment, task)
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
                    self._send(enrollment, task, kept)
                else:
                    self._resend_masked(enrollment, task)
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
            secure = None if task.secure_aggregation is None else self._secure_exchange(enrollment, task)
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
            self._send(enrollment, task, update)
            return None
        try:
            masked = secure.masked_upload(result.update, global_state, task.selection)
            self._send(enrollment, task, masked, masked=True)
            secure.answer_unmasking()
        except SecureAggregationError as refusal:
            self._decline_secure(enrollment, task, refusal)
        return None

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

    def _secure_exchange(self, enrollment: Enrollment, task: Task) -> SecureTask:
        """The task's secure-aggregation round at this silo, its keys and shares exchanged."""
        tls = self.config.connection.tls
        if tls is None:
            raise SecureAggregationError(
                "secure aggregation signs round keys with the silo's certificate: [tls]"
            )
        secure = SecureTask(
            self.client,
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

    def _resend_masked(self, enrollment: Enrollment, task: Task) -> None:
        """A secure task trained before a coordinator restart: the same keys, the same masked update."""
        try:
            secure = self._secure_exchange(enrollment, task)
            masked = secure.kept_upload()
            if masked is None:
                raise SecureAggregationError("the update of this task was trained but never masked")
            self._send(enrollment, task, masked, masked=True)
            secure.answer_unmasking()
        except SecureAggregationError as refusal:
            self._decline_secure(enrollment, task, refusal)

    def _decline_secure(self, enrollment: Enrollment, task: Task, refusal: SecureAggregationError) -> None:
        """A secure-aggregation step this silo refuses (the participant logged why): decline the task."""
        LOGGER.warning(
            "silo %s declines round %d: secure aggregation: %s",
            enrollment.silo_id,
            round_number(task.round_index),
            refusal,
        )
        self.client.decline(
            enrollment.silo_id, task.task_id, f"secure aggregation: {refusal}", self.ledger.spent()
        )

    def _answer_evaluation(self, enrollment: Enrollment, task: Task) -> None:
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
            self.client,
            task,
            silo_id=enrollment.silo_id,
            evaluator=evaluator,
            ledger=self.ledger,
            downloads=self.state_dir / "downloads",
        )
        self.metrics.epsilon.set(self.ledger.spent())

    def _send(
        self, enrollment: Enrollment, task: Task, update: SpooledPayload, *, masked: bool = False
    ) -> None:
        """Upload the task's update (`masked`: its masked form) from its kept file (which stays until the
        next task replaces it)."""
        announcement = UploadAnnouncement(
            enrollment.silo_id, task.task_id, update.info, self.ledger.spent(), masked=masked
        )
        self.client.upload_update(announcement, update, enrollment.plan.chunk_bytes)
        LOGGER.info(
            "silo %s: round %d sent, epsilon %.4f",
            enrollment.silo_id,
            round_number(task.round_index),
            announcement.epsilon_spent,
        )
