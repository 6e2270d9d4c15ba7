"""The silo's calls to the coordinator, with retries of transient failures (protobuf stays in here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc

from aslora.v1 import federation_pb2 as pb
from aslora.v1 import federation_pb2_grpc
from aslora_rpc import secure_aggregation_wire, wire
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
from aslora_rpc.transfer import PayloadInfo, SpooledPayload, file_chunks, receive_payload
from aslora_silo.retry import Backoff

CALL_TIMEOUT_SECONDS = 30.0
WAIT_MARGIN_SECONDS = 10.0
"""A WaitForTask call may take this much longer than the wait it asks for."""
TRANSFER_TIMEOUT_SECONDS = 3600.0


class CoordinatorClient:
    """One silo's connection to the coordinator."""

    def __init__(self, channel: grpc.Channel, backoff: Backoff) -> None:
        self._stub = federation_pb2_grpc.FederationStub(channel)
        self._backoff = backoff

    def get_run(self, after_run_id: str, wait_seconds: float) -> RunPlan | None:
        """The plan of the run being served (other than `after_run_id`), or None within the wait."""
        request = pb.GetRunRequest(after_run_id=after_run_id, wait_seconds=wait_seconds)
        timeout = wait_seconds + WAIT_MARGIN_SECONDS
        response = self._backoff.call("get run", lambda: self._stub.GetRun(request, timeout=timeout))
        return wire.offer_from_proto(response)

    def decline_run(self, decline: RunDecline) -> None:
        """Tell the coordinator this silo will not take part in a run (and why)."""
        request = wire.run_decline_to_proto(decline)
        self._backoff.call(
            "decline run", lambda: self._stub.DeclineRun(request, timeout=CALL_TIMEOUT_SECONDS)
        )

    def register(self, registration: Registration) -> Enrollment:
        """Join the run; FAILED_PRECONDITION (version, base model, run) propagates as grpc.RpcError."""
        request = wire.registration_to_proto(registration)
        response = self._backoff.call(
            "register", lambda: self._stub.Register(request, timeout=CALL_TIMEOUT_SECONDS)
        )
        return wire.enrollment_from_proto(response)

    def heartbeat(self, silo_id: str, run_id: str, epsilon_spent: float) -> RunState:
        """One heartbeat (not retried: the next one follows soon)."""
        request = pb.HeartbeatRequest(silo_id=silo_id, run_id=run_id, epsilon_spent=epsilon_spent)
        return wire.RUN_STATES.from_proto(self._stub.Heartbeat(request, timeout=CALL_TIMEOUT_SECONDS).state)

    def wait_for_task(self, silo_id: str, run_id: str, wait_seconds: float) -> TaskOutcome:
        """The next task in run `run_id`, the end of that run, or nothing yet."""
        request = pb.WaitForTaskRequest(silo_id=silo_id, run_id=run_id, wait_seconds=wait_seconds)
        timeout = wait_seconds + WAIT_MARGIN_SECONDS
        response = self._backoff.call(
            "wait for task", lambda: self._stub.WaitForTask(request, timeout=timeout)
        )
        return wire.task_outcome_from_proto(response)

    def download_adapter(
        self, silo_id: str, task_id: str, expected: PayloadInfo, directory: Path
    ) -> SpooledPayload:
        """The task's global adapter spooled to `directory`, checked against its announced size and hash."""
        request = pb.DownloadAdapterRequest(silo_id=silo_id, task_id=task_id)

        def attempt() -> SpooledPayload:
            chunks = self._stub.DownloadAdapter(request, timeout=TRANSFER_TIMEOUT_SECONDS)
            return receive_payload(
                (chunk.data for chunk in chunks), expected, directory, "adapter-", expected.size_bytes
            )

        return self._backoff.call("download adapter", attempt)

    def upload_update(
        self, announcement: UploadAnnouncement, payload: SpooledPayload, chunk_bytes: int
    ) -> int:
        """Send the update (header, then chunks from its file); the round index it was accepted for."""

        def messages() -> Iterator[pb.UploadUpdateRequest]:
            yield wire.upload_header_to_proto(announcement)
            for chunk in file_chunks(payload.path, chunk_bytes):
                yield pb.UploadUpdateRequest(chunk=chunk)

        response = self._backoff.call(
            "upload update", lambda: self._stub.UploadUpdate(messages(), timeout=TRANSFER_TIMEOUT_SECONDS)
        )
        return response.round_index

    def decline(self, silo_id: str, task_id: str, reason: str, epsilon_spent: float) -> None:
        """Refuse a task."""
        request = pb.DeclineTaskRequest(
            silo_id=silo_id, task_id=task_id, reason=reason, epsilon_spent=epsilon_spent
        )
        self._backoff.call(
            "decline task", lambda: self._stub.DeclineTask(request, timeout=CALL_TIMEOUT_SECONDS)
        )

    def release_evaluation(self, reply: EvaluationReply) -> None:
        """Send an evaluation task's noised sums, or the reason none are released."""
        request = wire.evaluation_reply_to_proto(reply)
        self._backoff.call(
            "release evaluation", lambda: self._stub.ReleaseEvaluation(request, timeout=CALL_TIMEOUT_SECONDS)
        )

    def exchange_keys(
        self, silo_id: str, task_id: str, advertisement: KeyAdvertisement, wait_seconds: float
    ) -> list[KeyAdvertisement] | None:
        """Send this silo's signed round keys; every advertiser's once the key step closed, else None."""
        request = pb.ExchangeKeysRequest(
            silo_id=silo_id,
            task_id=task_id,
            keys=secure_aggregation_wire.advertisement_to_proto(advertisement),
            wait_seconds=wait_seconds,
        )
        timeout = wait_seconds + WAIT_MARGIN_SECONDS
        response = self._backoff.call(
            "exchange keys", lambda: self._stub.ExchangeKeys(request, timeout=timeout)
        )
        return secure_aggregation_wire.advertisements_from_proto(response.keys) if response.ready else None

    def exchange_shares(
        self, silo_id: str, task_id: str, sealed: list[EncryptedShares], wait_seconds: float
    ) -> list[EncryptedShares] | None:
        """Send the shares sealed for the peers; those sealed for this silo once sharing closed, else None."""
        request = pb.ExchangeSharesRequest(
            silo_id=silo_id,
            task_id=task_id,
            shares=[secure_aggregation_wire.sealed_to_proto(item) for item in sealed],
            wait_seconds=wait_seconds,
        )
        timeout = wait_seconds + WAIT_MARGIN_SECONDS
        response = self._backoff.call(
            "exchange shares", lambda: self._stub.ExchangeShares(request, timeout=timeout)
        )
        if not response.ready:
            return None
        return [secure_aggregation_wire.sealed_from_proto(item) for item in response.shares]

    def unmask_request(self, silo_id: str, task_id: str, wait_seconds: float) -> UnmaskRequest | None:
        """The survivors this silo is asked about once uploads closed, else None."""
        request = pb.GetUnmaskRequestRequest(silo_id=silo_id, task_id=task_id, wait_seconds=wait_seconds)
        timeout = wait_seconds + WAIT_MARGIN_SECONDS
        response = self._backoff.call(
            "unmask request", lambda: self._stub.GetUnmaskRequest(request, timeout=timeout)
        )
        return secure_aggregation_wire.unmask_request_from_proto(task_id, response)

    def release_shares(self, release: ShareRelease) -> None:
        """Send the shares released for an unmasking request."""
        request = secure_aggregation_wire.release_to_proto(release)
        self._backoff.call(
            "release shares", lambda: self._stub.ReleaseShares(request, timeout=CALL_TIMEOUT_SECONDS)
        )
