"""The silo-facing service: decode the protobuf request, call the orchestrator, encode the answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc

from aslora.v1 import federation_pb2 as pb
from aslora.v1 import federation_pb2_grpc, transfer_pb2
from aslora_coordinator.authorization import require_own_identity
from aslora_coordinator.config import TransportSettings
from aslora_coordinator.crash_points import CrashPoint, maybe_crash
from aslora_coordinator.errors import FederationError
from aslora_coordinator.handlers import SiloHandlers
from aslora_rpc import secure_aggregation_wire, wire
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.transfer import file_chunks, receive_payload


class FederationServicer(federation_pb2_grpc.FederationServicer):
    """Thin: no decisions here beyond binding each request to the caller's certificate name; errors are
    mapped by the ErrorCatalogInterceptor, roles checked by the AuthorizationInterceptor."""

    def __init__(self, handlers: SiloHandlers, transport: TransportSettings, upload_dir: Path) -> None:
        """Uploads are spooled to files in `upload_dir` while they arrive."""
        self.handlers = handlers
        self.upload_dir = upload_dir
        self.chunk_bytes = transport.chunk_bytes
        self.max_payload_bytes = transport.max_payload_bytes

    def GetRun(self, request: pb.GetRunRequest, context: grpc.ServicerContext) -> pb.GetRunResponse:
        """Long poll for the plan of the run being served."""
        return wire.offer_to_proto(self.handlers.get_run(request.after_run_id, request.wait_seconds))

    def DeclineRun(
        self, request: pb.DeclineRunRequest, context: grpc.ServicerContext
    ) -> pb.DeclineRunResponse:
        """A silo will not take part in a run whose plan it checked."""
        require_own_identity(context, request.silo_name)
        self.handlers.decline_run(wire.run_decline_from_proto(request))
        return pb.DeclineRunResponse()

    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.RegisterResponse:
        """Admit a silo."""
        require_own_identity(context, request.silo_name)
        return wire.enrollment_to_proto(self.handlers.register(wire.registration_from_proto(request)))

    def Heartbeat(self, request: pb.HeartbeatRequest, context: grpc.ServicerContext) -> pb.HeartbeatResponse:
        """Liveness and the silo's epsilon."""
        require_own_identity(context, request.silo_id)
        state = self.handlers.heartbeat(request.silo_id, request.run_id, request.epsilon_spent)
        return pb.HeartbeatResponse(state=wire.RUN_STATES.to_proto(state))

    def WaitForTask(
        self, request: pb.WaitForTaskRequest, context: grpc.ServicerContext
    ) -> pb.WaitForTaskResponse:
        """Long poll for the silo's next task."""
        require_own_identity(context, request.silo_id)
        outcome = self.handlers.wait_for_task(request.silo_id, request.run_id, request.wait_seconds)
        return wire.task_outcome_to_proto(outcome)

    def DownloadAdapter(
        self, request: pb.DownloadAdapterRequest, context: grpc.ServicerContext
    ) -> Iterator[transfer_pb2.Chunk]:
        """The task's global adapter, chunk by chunk from its file."""
        require_own_identity(context, request.silo_id)
        adapter = self.handlers.adapter_for(request.silo_id, request.task_id)
        for chunk in file_chunks(adapter.path, self.chunk_bytes):
            yield transfer_pb2.Chunk(data=chunk)
            maybe_crash(CrashPoint.DURING_DOWNLOAD)

    def UploadUpdate(
        self, request_iterator: Iterator[pb.UploadUpdateRequest], context: grpc.ServicerContext
    ) -> pb.UploadUpdateResponse:
        """Header first (checked before any chunk is read), then chunks spooled to disk, then validation."""
        first = next(request_iterator, None)
        if first is None:
            raise FederationError(ErrorCode.MALFORMED_MESSAGE, "empty upload")
        announcement = wire.upload_header_from_proto(first)
        require_own_identity(context, announcement.silo_id)
        already = self.handlers.check_upload(announcement)
        if already is not None:
            return pb.UploadUpdateResponse(round_index=already, bytes_received=0)
        payload = receive_payload(
            _chunks(request_iterator),
            announcement.update,
            self.upload_dir,
            f"{announcement.silo_id}-",
            self.max_payload_bytes,
        )
        try:
            round_index = self.handlers.accept_upload(announcement, payload)
        finally:
            payload.path.unlink(missing_ok=True)
        return pb.UploadUpdateResponse(round_index=round_index, bytes_received=payload.info.size_bytes)

    def DeclineTask(
        self, request: pb.DeclineTaskRequest, context: grpc.ServicerContext
    ) -> pb.DeclineTaskResponse:
        """The silo refuses its task."""
        require_own_identity(context, request.silo_id)
        self.handlers.decline(request.silo_id, request.task_id, request.reason, request.epsilon_spent)
        return pb.DeclineTaskResponse()

    def ReleaseEvaluation(
        self, request: pb.ReleaseEvaluationRequest, context: grpc.ServicerContext
    ) -> pb.ReleaseEvaluationResponse:
        """The silo's noised evaluation sums, or why it releases none."""
        require_own_identity(context, request.silo_id)
        self.handlers.release_evaluation(wire.evaluation_reply_from_proto(request))
        return pb.ReleaseEvaluationResponse()

    def ExchangeKeys(
        self, request: pb.ExchangeKeysRequest, context: grpc.ServicerContext
    ) -> pb.ExchangeKeysResponse:
        """Long poll: keep the silo's signed keys, answer with every advertiser's once the step closed."""
        require_own_identity(context, request.silo_id)
        advertisement = secure_aggregation_wire.advertisement_from_proto(request.keys)
        keys = self.handlers.exchange_keys(
            request.silo_id, request.task_id, advertisement, request.wait_seconds
        )
        if keys is None:
            return pb.ExchangeKeysResponse(ready=False)
        return pb.ExchangeKeysResponse(
            ready=True, keys=[secure_aggregation_wire.advertisement_to_proto(item) for item in keys]
        )

    def ExchangeShares(
        self, request: pb.ExchangeSharesRequest, context: grpc.ServicerContext
    ) -> pb.ExchangeSharesResponse:
        """Long poll: keep the silo's sealed shares, answer with those sealed for it once sharing closed."""
        require_own_identity(context, request.silo_id)
        sealed = tuple(secure_aggregation_wire.sealed_from_proto(item) for item in request.shares)
        inbox = self.handlers.exchange_shares(request.silo_id, request.task_id, sealed, request.wait_seconds)
        if inbox is None:
            return pb.ExchangeSharesResponse(ready=False)
        return pb.ExchangeSharesResponse(
            ready=True, shares=[secure_aggregation_wire.sealed_to_proto(item) for item in inbox]
        )

    def GetUnmaskRequest(
        self, request: pb.GetUnmaskRequestRequest, context: grpc.ServicerContext
    ) -> pb.GetUnmaskRequestResponse:
        """Long poll: the survivors the silo is asked about."""
        require_own_identity(context, request.silo_id)
        asked = self.handlers.unmask_request(request.silo_id, request.task_id, request.wait_seconds)
        return secure_aggregation_wire.unmask_request_to_proto(asked)

    def ReleaseShares(
        self, request: pb.ReleaseSharesRequest, context: grpc.ServicerContext
    ) -> pb.ReleaseSharesResponse:
        """A survivor's shares for the unmasking."""
        require_own_identity(context, request.silo_id)
        self.handlers.release_shares(secure_aggregation_wire.release_from_proto(request))
        return pb.ReleaseSharesResponse()


def _chunks(messages: Iterator[pb.UploadUpdateRequest]) -> Iterator[bytes]:
    for message in messages:
        if message.WhichOneof("part") != "chunk":
            raise FederationError(ErrorCode.MALFORMED_MESSAGE, "only chunks may follow an upload's header")
        maybe_crash(CrashPoint.DURING_UPLOAD)
        yield message.chunk
