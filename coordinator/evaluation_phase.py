"""One evaluation of a global adapter at the silos: its tasks, the releases and refusals that arrived, and
the checks a release must pass (silo_evaluations.py holds the phase under the run's lock)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aslora_coordinator.errors import FederationError
from aslora_core.config import FederationSettings
from aslora_core.federated_evaluation import EvaluationRelease, FederatedEvaluation, combine
from aslora_core.privacy import FULL_BATCH
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.messages import EvaluationReply, Task
from aslora_rpc.transfer import SpooledPayload

EVALUATION_STEPS = 1
"""An evaluation task releases once; the field keeps the Task message's shape."""


def evaluation_task_id(run_id: str, round_index: int) -> str:
    """The id of the evaluation tasks of the adapter after round `round_index`."""
    return f"{run_id}-r{round_index}-eval"


@dataclass
class EvaluationPhase:
    """The silos asked to evaluate the adapter after one round, and what each answered before the close."""

    round_index: int
    task_id: str
    tasks: dict[str, Task]
    adapter: SpooledPayload
    deadline: float
    releases: dict[str, EvaluationRelease] = field(default_factory=dict)
    declined: dict[str, str] = field(default_factory=dict)
    closed: bool = False

    @property
    def pending(self) -> set[str]:
        """Silos asked that have neither released nor declined."""
        return set(self.tasks) - set(self.releases) - set(self.declined)

    def accept(self, reply: EvaluationReply, asked_noise_multiplier: float) -> EvaluationRelease | None:
        """Keep a silo's answer; the release, when it is one. FederationError for a reply to another task,
        a second answer, or a release with less noise than the plan asked."""
        if reply.task_id != self.task_id or self.closed:
            raise FederationError(ErrorCode.ROUND_CLOSED, f"evaluation task {reply.task_id}")
        if reply.silo_id not in self.tasks:
            raise FederationError(ErrorCode.NOT_ASSIGNED, reply.task_id)
        if reply.silo_id not in self.pending:
            raise FederationError(ErrorCode.DUPLICATE_UPDATE, f"evaluation of round {self.round_index}")
        if reply.sums is None:
            self.declined[reply.silo_id] = reply.declined_reason or "declined"
            return None
        if not reply.noise_multiplier >= asked_noise_multiplier:
            raise FederationError(
                ErrorCode.INVALID_UPDATE,
                f"released with noise multiplier {reply.noise_multiplier}, the plan asks at least "
                f"{asked_noise_multiplier}",
            )
        release = EvaluationRelease(reply.silo_id, reply.sums, reply.noise_multiplier)
        self.releases[reply.silo_id] = release
        return release

    def outcome(self, federation: FederationSettings) -> FederatedEvaluation:
        """The federated figures from the releases that arrived; silos that declined or never answered
        are named as not covered."""
        missing = [silo for silo in self.tasks if silo not in self.releases]
        return combine(
            self.round_index, list(self.releases.values()), missing, federation.evaluation_loss_bound
        )


def evaluation_tasks(
    silo_ids: list[str],
    task_id: str,
    round_index: int,
    federation: FederationSettings,
    *,
    adapter: SpooledPayload,
    seconds: float,
) -> dict[str, Task]:
    """One evaluation task per silo: the plan's evaluation sigma, full batch, one release."""
    return {
        silo_id: Task(
            task_id=task_id,
            round_index=round_index,
            selection={},
            noise_multiplier=federation.evaluation_noise_multiplier,
            sample_rate=FULL_BATCH,
            local_steps=EVALUATION_STEPS,
            adapter=adapter.info,
            seconds_to_deadline=seconds,
            evaluate=True,
        )
        for silo_id in silo_ids
    }
