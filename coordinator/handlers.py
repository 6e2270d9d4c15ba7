"""What the silo-facing servicer calls: plain methods on plain types (the run router implements them)."""

from __future__ import annotations

from typing import Protocol

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
from aslora_rpc.secure_aggregation.messages import ShareRelease, UnmaskRequest
from aslora_rpc.secure_aggregation.share_encryption import EncryptedShares
from aslora_rpc.secure_aggregation.signatures import KeyAdvertisement
from aslora_rpc.transfer import SpooledPayload


class SiloHandlers(Protocol):
    """The silo-facing operations; each raises FederationError to refuse."""

    def get_run(self, after_run_id: str, wait_seconds: float) -> RunPlan | None:
        """The plan of the run being served (not `after_run_id`), or None within the wait."""
        ...

    def decline_run(self, decline: RunDecline) -> None:
        """Record that a silo will not take part in a run whose plan it checked."""
        ...

    def register(self, registration: Registration) -> Enrollment:
        """Admit a silo."""
        ...

    def heartbeat(self, silo_id: str, run_id: str, epsilon_spent: float) -> RunState:
        """Note a silo's liveness and epsilon."""
        ...

    def wait_for_task(self, silo_id: str, run_id: str, wait_seconds: float) -> TaskOutcome:
        """The silo's next task, the run's end, or nothing yet."""
        ...

    def adapter_for(self, silo_id: str, task_id: str) -> SpooledPayload:
        """The global adapter file of a task."""
        ...

    def check_upload(self, announcement: UploadAnnouncement) -> int | None:
        """Refuse an upload before its first chunk; the round index when it was already received whole."""
        ...

    def accept_upload(self, announcement: UploadAnnouncement, payload: SpooledPayload) -> int:
        """Take a received update; return its round index."""
        ...

    def decline(self, silo_id: str, task_id: str, reason: str, epsilon_spent: float) -> None:
        """Record that a silo refuses its task."""
        ...

    def release_evaluation(self, reply: EvaluationReply) -> None:
        """Keep a silo's answer to its evaluation task: noised sums, or why it releases none."""
        ...

    def exchange_keys(
        self, silo_id: str, task_id: str, advertisement: KeyAdvertisement, wait_seconds: float
    ) -> tuple[KeyAdvertisement, ...] | None:
        """Keep a silo's signed round keys; every advertiser's once the key step closed, else None."""
        ...

    def exchange_shares(
        self, silo_id: str, task_id: str, sealed: tuple[EncryptedShares, ...], wait_seconds: float
    ) -> tuple[EncryptedShares, ...] | None:
        """Keep a silo's sealed shares; those sealed for it once the share step closed, else None."""
        ...

    def unmask_request(self, silo_id: str, task_id: str, wait_seconds: float) -> UnmaskRequest | None:
        """The survivors a silo is asked about once uploads closed, else None."""
        ...

    def release_shares(self, release: ShareRelease) -> None:
        """Keep a survivor's released shares."""
        ...
