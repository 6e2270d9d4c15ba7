"""The coordinator's Prometheus metrics (DESIGN section 7), in a registry of its own.

Every name starts with `aslora_`. Label values are bounded: `outcome` takes the values of `UpdateOutcome`
only, and `silo` only the ids of silos that registered (their names are checked against a conservative
alphabet at registration). No silo's private, data-dependent figures are here: those stay on the silo's
own endpoint (silo/metrics.py); the federated accuracy and loss are pooled from the silos' differentially
private evaluation releases.

The hooks into the round machinery are single calls: the orchestrator owns a `CoordinatorMetrics`, the
round driver reports each completed round, the service serves the registry and counts uploads through
`CountingHandlers`, a pass-through around the silo-facing handlers.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aslora_coordinator.errors import FederationError
from aslora_coordinator.handlers import SiloHandlers
from aslora_core.federated_evaluation import FederatedEvaluation
from aslora_core.rounds import RoundOutcome, b_fraction
from aslora_rpc.endpoints import Endpoint
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.messages import (
    Enrollment,
    EvaluationReply,
    Registration,
    RunDecline,
    RunPlan,
    RunState,
    TaskOutcome,
    UploadAnnouncement,
)
from aslora_rpc.metrics_endpoint import MetricsEndpoint
from aslora_rpc.secure_aggregation.messages import ShareRelease, UnmaskRequest
from aslora_rpc.secure_aggregation.share_encryption import EncryptedShares
from aslora_rpc.secure_aggregation.signatures import KeyAdvertisement
from aslora_rpc.transfer import SpooledPayload

ROUND_DURATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Seconds from a round's opening to its aggregation: from a tiny test run to the default deadline."""
AGGREGATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)
"""Seconds of one aggregation: milliseconds for the exact mean, up to seconds for SVD on large shapes."""

Result = TypeVar("Result")


EVALUATION_ANSWERS = ("released", "declined")
"""The values of the `answer` label: a silo asked to evaluate released its sums, or declined (or never
answered)."""


class UpdateOutcome(enum.Enum):
    """What became of an upload or a task; the only values of the `outcome` label."""

    ACCEPTED = "accepted"
    """Validated and kept for the round's aggregation."""
    REJECTED = "rejected"
    """Refused as invalid: bad tensors, too large, not assigned, unknown silo or task."""
    LATE = "late"
    """For a round that had already closed."""
    DUPLICATE = "duplicate"
    """A second update of the same silo for the same round."""
    DECLINED = "declined"
    """The silo refused its task (e.g. its own privacy budget)."""


REFUSAL_OUTCOMES: Mapping[ErrorCode, UpdateOutcome] = {
    ErrorCode.ROUND_CLOSED: UpdateOutcome.LATE,
    ErrorCode.DUPLICATE_UPDATE: UpdateOutcome.DUPLICATE,
}
"""Refusals with an outcome of their own; every other refusal of an upload counts as `rejected`."""


class EpsilonSource(Protocol):
    """What the metrics read from the privacy ledger."""

    def recomputed(self, silo_id: str) -> float:
        """The coordinator's epsilon for the silo."""
        ...


class CoordinatorMetrics:
    """The coordinator's metric families, registered in a registry owned by this object."""

    def __init__(self) -> None:
        """Create the families; nothing is served until `serve`."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.rounds_completed = Counter(
            "aslora_rounds_completed",
            "Rounds aggregated since this coordinator process started.",
            registry=self.registry,
        )
        self.round_duration = Histogram(
            "aslora_round_duration_seconds",
            "Seconds from a round's opening to the end of its aggregation (the successful attempt).",
            buckets=ROUND_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.silos_connected = Gauge(
            "aslora_silos_connected",
            "Registered silos heard from within the heartbeat timeout.",
            registry=self.registry,
        )
        self.updates = Counter(
            "aslora_updates",
            "Uploads and task replies by outcome: accepted, rejected, late, duplicate, declined.",
            ["outcome"],
            registry=self.registry,
        )
        self.update_bytes = Counter(
            "aslora_update_bytes",
            "Serialized bytes of the accepted updates.",
            registry=self.registry,
        )
        self.aggregation_seconds = Histogram(
            "aslora_aggregation_seconds",
            "Seconds spent aggregating the silos' updates of one round.",
            buckets=AGGREGATION_BUCKETS,
            registry=self.registry,
        )
        self.privacy_epsilon = Gauge(
            "aslora_privacy_epsilon",
            "Epsilon spent by each silo, as the coordinator's ledger recomputes it at the run's delta.",
            ["silo"],
            registry=self.registry,
        )
        self.selection_b_fraction = Gauge(
            "aslora_selection_b_fraction",
            "Fraction of the LoRA layers that trained factor B in the last completed round.",
            registry=self.registry,
        )
        self.federated_accuracy = Gauge(
            "aslora_federated_accuracy",
            "Accuracy of the latest adapter the silos evaluated, pooled from their noised releases.",
            registry=self.registry,
        )
        self.federated_loss = Gauge(
            "aslora_federated_loss",
            "Mean per-example loss (clipped at the run's evaluation_loss_bound) of that adapter, pooled.",
            registry=self.registry,
        )
        self.federated_evaluation_silos = Gauge(
            "aslora_federated_evaluation_silos",
            "Silos asked to evaluate the latest adapter, by whether they released (released, declined).",
            ["answer"],
            registry=self.registry,
        )
        self.federated_evaluation_round = Gauge(
            "aslora_federated_evaluation_round",
            "The round after which the silos last evaluated the global adapter.",
            registry=self.registry,
        )
        # No evaluation yet: not a number, rather than a misleading 0.
        self.federated_accuracy.set(math.nan)
        self.federated_loss.set(math.nan)
        for answer in EVALUATION_ANSWERS:
            self.federated_evaluation_silos.labels(answer=answer)
        for outcome in UpdateOutcome:
            # Every outcome is exposed from the start (at 0), so that rate() sees the first increment.
            self.updates.labels(outcome=outcome.value)

    @classmethod
    def watching(cls, connected_silos: Callable[[], int]) -> CoordinatorMetrics:
        """Metrics whose connected-silo count is `connected_silos()` whenever they are scraped."""
        metrics = cls()
        metrics.silos_connected.set_function(connected_silos)
        return metrics

    def round_completed(
        self, outcome: RoundOutcome, round_seconds: float, ledger: EpsilonSource, silo_ids: Iterable[str]
    ) -> None:
        """One aggregated round: its duration, its aggregation time, its selection, and the epsilon of
        every registered silo (`silo_ids`) as the ledger recomputes it; called under the orchestrator's
        lock."""
        self.rounds_completed.inc()
        self.round_duration.observe(round_seconds)
        self.aggregation_seconds.observe(outcome.aggregation_seconds)
        self.selection_b_fraction.set(b_fraction(outcome.selection))
        for silo_id in silo_ids:
            self.privacy_epsilon.labels(silo=silo_id).set(ledger.recomputed(silo_id))

    def federated_evaluation(self, evaluation: FederatedEvaluation, ledger: EpsilonSource) -> None:
        """The silos' pooled evaluation of one adapter (a figure without examples is NaN), and the epsilon
        of the silos that released it."""
        self.federated_accuracy.set(math.nan if evaluation.accuracy is None else evaluation.accuracy)
        self.federated_loss.set(math.nan if evaluation.loss is None else evaluation.loss)
        released, declined = EVALUATION_ANSWERS
        self.federated_evaluation_silos.labels(answer=released).set(evaluation.silos_released)
        self.federated_evaluation_silos.labels(answer=declined).set(
            evaluation.silos_asked - evaluation.silos_released
        )
        self.federated_evaluation_round.set(evaluation.round_index)
        for release in evaluation.releases:
            self.privacy_epsilon.labels(silo=release.silo_id).set(ledger.recomputed(release.silo_id))

    def update(self, outcome: UpdateOutcome, payload_bytes: int = 0) -> None:
        """Count one upload or task reply; the bytes of accepted updates are added up."""
        self.updates.labels(outcome=outcome.value).inc()
        if outcome is UpdateOutcome.ACCEPTED:
            self.update_bytes.inc(payload_bytes)

    def serve(self, listen: Endpoint | None) -> MetricsEndpoint | None:
        """Serve this registry on `listen` (None: metrics are not served)."""
        return None if listen is None else MetricsEndpoint(listen, self.registry)


class CountingHandlers:
    """The silo-facing handlers, passed through unchanged, counting what becomes of each update."""

    def __init__(self, handlers: SiloHandlers, metrics: CoordinatorMetrics) -> None:
        self._handlers = handlers
        self._metrics = metrics

    def get_run(self, after_run_id: str, wait_seconds: float) -> RunPlan | None:
        """The plan of the run being served."""
        return self._handlers.get_run(after_run_id, wait_seconds)

    def decline_run(self, decline: RunDecline) -> None:
        """Record that a silo declines a run."""
        self._handlers.decline_run(decline)

    def register(self, registration: Registration) -> Enrollment:
        """Admit a silo."""
        return self._handlers.register(registration)

    def heartbeat(self, silo_id: str, run_id: str, epsilon_spent: float) -> RunState:
        """Note a silo's liveness and epsilon."""
        return self._handlers.heartbeat(silo_id, run_id, epsilon_spent)

    def wait_for_task(self, silo_id: str, run_id: str, wait_seconds: float) -> TaskOutcome:
        """The silo's next task, the run's end, or nothing yet."""
        return self._handlers.wait_for_task(silo_id, run_id, wait_seconds)

    def adapter_for(self, silo_id: str, task_id: str) -> SpooledPayload:
        """The global adapter file of a task."""
        return self._handlers.adapter_for(silo_id, task_id)

    def check_upload(self, announcement: UploadAnnouncement) -> int | None:
        """Refuse an upload before its first chunk (counted when refused); see SiloDesk.check_upload."""
        return self._counted(lambda: self._handlers.check_upload(announcement))

    def accept_upload(self, announcement: UploadAnnouncement, payload: SpooledPayload) -> int:
        """Take a received update (counted as accepted, with its bytes, or by its refusal)."""
        round_index = self._counted(lambda: self._handlers.accept_upload(announcement, payload))
        self._metrics.update(UpdateOutcome.ACCEPTED, payload.info.size_bytes)
        return round_index

    def decline(self, silo_id: str, task_id: str, reason: str, epsilon_spent: float) -> None:
        """Record that a silo refuses its task."""
        self._counted(lambda: self._handlers.decline(silo_id, task_id, reason, epsilon_spent))
        self._metrics.update(UpdateOutcome.DECLINED)

    def release_evaluation(self, reply: EvaluationReply) -> None:
        """Keep a silo's answer to its evaluation task (a refusal of it is counted like an upload's)."""
        self._counted(lambda: self._handlers.release_evaluation(reply))

    def exchange_keys(
        self, silo_id: str, task_id: str, advertisement: KeyAdvertisement, wait_seconds: float
    ) -> tuple[KeyAdvertisement, ...] | None:
        """Passed through (a secure round's steps are not updates)."""
        return self._handlers.exchange_keys(silo_id, task_id, advertisement, wait_seconds)

    def exchange_shares(
        self, silo_id: str, task_id: str, sealed: tuple[EncryptedShares, ...], wait_seconds: float
    ) -> tuple[EncryptedShares, ...] | None:
        """Passed through."""
        return self._handlers.exchange_shares(silo_id, task_id, sealed, wait_seconds)

    def unmask_request(self, silo_id: str, task_id: str, wait_seconds: float) -> UnmaskRequest | None:
        """Passed through."""
        return self._handlers.unmask_request(silo_id, task_id, wait_seconds)

    def release_shares(self, release: ShareRelease) -> None:
        """Passed through."""
        self._handlers.release_shares(release)

    def _counted(self, call: Callable[[], Result]) -> Result:
        try:
            return call()
        except FederationError as refusal:
            self._metrics.update(REFUSAL_OUTCOMES.get(refusal.code, UpdateOutcome.REJECTED))
            raise
