"""The operator-facing service: runs (submit, list, cancel), a run's status, silos, ledger and adapter,
pause/resume of the active run, and the service's shutdown."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from aslora.v1 import admin_pb2 as pb
from aslora.v1 import admin_pb2_grpc
from aslora_coordinator.admin_queries import run_view
from aslora_coordinator.admin_wire import (
    EXPORT_FORMATS,
    event_to_proto,
    history_to_proto,
    ledger_to_proto,
    run_to_proto,
    silo_to_proto,
    status_to_proto,
)
from aslora_coordinator.event_log import EventLog
from aslora_coordinator.federation_admin import FederationAdmin
from aslora_rpc.transfer import file_chunks
from aslora_rpc.wire import RUN_STATES, payload_info_to_proto

WATCH_SLICE_SECONDS = 1.0
"""An event stream checks at least this often whether its watcher is still there."""


class AdminServicer(admin_pb2_grpc.AdminServicer):
    """Thin: every request goes to the federation's admin operations."""

    def __init__(self, admin: FederationAdmin, chunk_bytes: int, events: EventLog) -> None:
        self.admin = admin
        self.chunk_bytes = chunk_bytes
        self.events = events

    def SubmitRun(self, request: pb.SubmitRunRequest, context: grpc.ServicerContext) -> pb.SubmitRunResponse:
        """Queue a run."""
        entry, ahead = self.admin.submit(request.run_toml, request.source)
        return pb.SubmitRunResponse(run_id=entry.run_id, queued_ahead=ahead)

    def ListRuns(self, request: pb.ListRunsRequest, context: grpc.ServicerContext) -> pb.ListRunsResponse:
        """Every submitted run."""
        return pb.ListRunsResponse(runs=[run_to_proto(run_view(entry)) for entry in self.admin.runs()])

    def CancelRun(self, request: pb.CancelRunRequest, context: grpc.ServicerContext) -> pb.ControlResponse:
        """Cancel a queued or active run."""
        state = self.admin.cancel(request.run_id, request.reason)
        return pb.ControlResponse(state=RUN_STATES.to_proto(state))

    def GetStatus(self, request: pb.GetStatusRequest, context: grpc.ServicerContext) -> pb.GetStatusResponse:
        """A run at a glance."""
        return status_to_proto(self.admin.status(request.run_id))

    def ListSilos(self, request: pb.ListSilosRequest, context: grpc.ServicerContext) -> pb.ListSilosResponse:
        """Every silo of a run."""
        return pb.ListSilosResponse(silos=[silo_to_proto(v) for v in self.admin.silos(request.run_id)])

    def GetPrivacyLedger(
        self, request: pb.GetPrivacyLedgerRequest, context: grpc.ServicerContext
    ) -> pb.GetPrivacyLedgerResponse:
        """Reported and recomputed epsilon per silo of a run."""
        return ledger_to_proto(self.admin.ledger(request.run_id))

    def GetRunHistory(
        self, request: pb.GetRunHistoryRequest, context: grpc.ServicerContext
    ) -> pb.GetRunHistoryResponse:
        """A run's figures round by round."""
        return history_to_proto(self.admin.history(request.run_id))

    def Pause(self, request: pb.PauseRequest, context: grpc.ServicerContext) -> pb.ControlResponse:
        """Open no new round of the active run after the current one."""
        return pb.ControlResponse(state=RUN_STATES.to_proto(self.admin.pause()))

    def Resume(self, request: pb.ResumeRequest, context: grpc.ServicerContext) -> pb.ControlResponse:
        """Undo a pause."""
        return pb.ControlResponse(state=RUN_STATES.to_proto(self.admin.resume()))

    def EvictSilo(self, request: pb.EvictSiloRequest, context: grpc.ServicerContext) -> pb.ControlResponse:
        """Take a silo out of the active run."""
        state = self.admin.evict(request.silo_id, request.reason)
        return pb.ControlResponse(state=RUN_STATES.to_proto(state))

    def Shutdown(self, request: pb.ShutdownRequest, context: grpc.ServicerContext) -> pb.ControlResponse:
        """Stop the service; the active run's state (none: unspecified)."""
        state = self.admin.shutdown(request.reason)
        return pb.ControlResponse() if state is None else pb.ControlResponse(state=RUN_STATES.to_proto(state))

    def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.FederationEvent]:
        """The kept lifecycle events after the request's sequence number, then each new one, until the
        coordinator shuts down or the watcher goes away."""
        after = request.after_sequence
        while context.is_active():
            events, closed = self.events.after(after, WATCH_SLICE_SECONDS)
            for event in events:
                yield event_to_proto(event)
                after = event.sequence
            if closed:
                return

    def ExportAdapter(
        self, request: pb.ExportAdapterRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportAdapterResponse]:
        """Each file of the export: its header, then its chunks."""
        export_format = EXPORT_FORMATS.from_proto(request.format)
        with self.admin.export(request.run_id, export_format) as files:
            for item in files:
                header = pb.ExportedFile(name=item.name, payload=payload_info_to_proto(item.info))
                yield pb.ExportAdapterResponse(file=header)
                for chunk in file_chunks(item.path, self.chunk_bytes):
                    yield pb.ExportAdapterResponse(chunk=chunk)
