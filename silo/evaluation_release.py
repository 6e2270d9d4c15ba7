"""A silo's answer to an evaluation task: decline (its config, no split, its budget), or charge its ledger
for one full-batch Gaussian release and send the noised sums of its held-out records."""

from __future__ import annotations

import logging
from pathlib import Path

from aslora_core.data import EncodedDataset
from aslora_core.evaluation_release import clipped_sums, noised
from aslora_core.factors import AdapterState
from aslora_core.federated_evaluation import EvaluationSums
from aslora_core.payload_files import state_from_file
from aslora_core.privacy import FULL_BATCH, Mechanism, make_noise_source
from aslora_core.privacy.noise import derive_seed
from aslora_core.serialization import SerializationError
from aslora_rpc.messages import EvaluationReply, RunPlan, Task
from aslora_silo.budget_forecast import evaluation_noise_multiplier
from aslora_silo.client import CoordinatorClient
from aslora_silo.config import LocalData, SiloPrivacy
from aslora_silo.ledger import SiloLedger
from aslora_silo.task_checks import TaskRefusedError, check_adapter
from aslora_silo.workspace import Workspace, load_evaluation_records

LOGGER = logging.getLogger(__name__)
EVALUATION_SEED_TAG = "evaluation"
"""Separates a test-mode evaluation's noise seed from the training seeds of the same silo and round."""


class EvaluationDeclinedError(Exception):
    """The silo releases nothing for this evaluation task; the message says why (sent to the coordinator)."""


class SiloEvaluator:
    """The silo's held-out records, encoded once, and the release of their sums under its own privacy
    settings."""

    def __init__(
        self, workspace: Workspace, data: LocalData, privacy: SiloPrivacy, ledger: SiloLedger, state_dir: Path
    ) -> None:
        """Encode the evaluation split (none: every evaluation task is declined)."""
        self.workspace = workspace
        self.privacy = privacy
        self.ledger = ledger
        self.released: set[int] = set()
        """Rounds whose adapter this process has released an evaluation of: one release per round."""
        plan = workspace.plan
        records = load_evaluation_records(plan.task, data, plan.label_names, state_dir)
        self.data: EncodedDataset | None = (
            None
            if records is None or len(records) == 0
            else workspace.task.encode(records, workspace.model_path, workspace.compute.max_length)
        )

    def noise_multiplier(self, task: Task) -> float:
        """The task's ask, raised to this silo's floor."""
        return evaluation_noise_multiplier(task.noise_multiplier, self.privacy)

    def release(self, task: Task, state: AdapterState) -> tuple[EvaluationSums, float]:
        """Charge the ledger (on disk) for one release, then evaluate `state` and noise the sums; the noised
        sums and the noise multiplier used. EvaluationDeclinedError when this silo will not release."""
        plan = self.workspace.plan
        if self.data is None:
            raise EvaluationDeclinedError(
                "this silo has no evaluation records ([data] eval_path or eval_fraction)"
            )
        # A coordinator asking more often than its own plan says could only be spending this silo's budget.
        if not plan.federation.evaluates_after(task.round_index):
            raise EvaluationDeclinedError(f"the run plan evaluates no adapter after round {task.round_index}")
        if task.round_index in self.released:
            raise EvaluationDeclinedError(f"the evaluation of round {task.round_index} was released already")
        sigma = self.noise_multiplier(task)
        if sigma == 0 and not self.workspace.seeded:
            raise EvaluationDeclinedError("an evaluation release without noise needs this silo's test mode")
        # A release without noise has no guarantee to budget (as a non-private task): test mode only.
        if sigma > 0:
            self._check_budget(sigma, plan.run_id)
        if self.workspace.seeded:
            LOGGER.warning(
                "silo %s: TEST MODE, evaluation of round %d: seeded noise (sigma %g), no privacy guarantee",
                self.workspace.silo_id,
                task.round_index,
                sigma,
            )
        self.ledger.record_evaluation(sigma)
        self.released.add(task.round_index)
        loss_bound = plan.federation.evaluation_loss_bound
        exact = clipped_sums(
            self.workspace.model,
            state,
            self.data,
            self.workspace.task,
            loss_bound,
            device=self.workspace.compute.device,
        )
        seed = derive_seed(
            plan.federation.seed, self.workspace.silo_id, EVALUATION_SEED_TAG, task.round_index
        )
        source = make_noise_source(not self.workspace.seeded, seed)
        return noised(exact, loss_bound, sigma, source), sigma

    def _check_budget(self, sigma: float, run_id: str) -> None:
        """EvaluationDeclinedError when one release at `sigma` would take this silo past its lifetime
        budget or this run past its max_run_epsilon, both at its own delta."""
        spent = self.ledger.snapshot()
        delta = self.privacy.max_delta
        # Planned as the ledger charges a release: the history checked is then the one charged next.
        if spent.would_exceed(
            sigma,
            FULL_BATCH,
            1,
            delta,
            self.privacy.max_epsilon,
            mechanism=Mechanism.EVALUATION,
            run_id=run_id,
        ):
            raise EvaluationDeclinedError(
                f"the release would take this silo's epsilon past its own budget {self.privacy.max_epsilon:g}"
            )
        limit = self.privacy.max_run_epsilon
        if limit is not None and spent.of_run(run_id).would_exceed(
            sigma, FULL_BATCH, 1, delta, limit, mechanism=Mechanism.EVALUATION, run_id=run_id
        ):
            raise EvaluationDeclinedError(
                f"the release would take this run's epsilon past this silo's max_run_epsilon {limit:g}"
            )


def evaluation_refusal(plan: RunPlan, data: LocalData, privacy: SiloPrivacy) -> str | None:
    """Why this silo releases no evaluation in this run (None: it does, each release within its budget)."""
    if not plan.federation.silo_evaluation:
        return "the run plan asks for no evaluation at the silos"
    if not privacy.release_evaluation:
        return "this silo's config declines evaluation releases (release_evaluation = false)"
    if not data.has_evaluation_split:
        return "this silo has no evaluation records ([data] eval_path or eval_fraction)"
    return None


def answer_evaluation_task(
    client: CoordinatorClient,
    task: Task,
    *,
    silo_id: str,
    evaluator: SiloEvaluator | str,
    ledger: SiloLedger,
    downloads: Path,
) -> None:
    """Download and check the task's adapter, release its evaluation and send the answer; `evaluator` a
    reason instead: decline for it, downloading nothing. A declined evaluation still leaves the silo in
    the run."""
    try:
        if isinstance(evaluator, str):
            raise EvaluationDeclinedError(evaluator)
        spooled = client.download_adapter(silo_id, task.task_id, task.adapter, downloads)
        try:
            state = state_from_file(spooled.path)
        finally:
            spooled.path.unlink(missing_ok=True)
        check_adapter(state, evaluator.workspace.template)
        sums, sigma = evaluator.release(task, state)
    except (EvaluationDeclinedError, TaskRefusedError, SerializationError) as refusal:
        LOGGER.warning("silo %s declines the evaluation of round %d: %s", silo_id, task.round_index, refusal)
        reply = EvaluationReply(silo_id, task.task_id, None, str(refusal), 0.0, ledger.spent())
    else:
        LOGGER.info("silo %s: evaluation of round %d released (sigma %g)", silo_id, task.round_index, sigma)
        reply = EvaluationReply(silo_id, task.task_id, sums, "", sigma, ledger.spent())
    client.release_evaluation(reply)
