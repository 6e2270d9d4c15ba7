"""The operator-facing service: status, silos, ledger, pause/resume/stop, export."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc

from aslora.v1 import admin_pb2 as pb
from aslora.v1 import admin_pb2_grpc
from aslora_coordinator import admin_queries
from aslora_coordinator.admin_wire import (
    EXPORT_FORMATS,
    ledger_to_proto,
    silo_to_proto,
    status_to_proto,
)
from aslora_coordinator.exporter import exported_files
from aslora_coordinator.global_model import GlobalModel
from aslora_coordinator.orchestrator import Orchestrator
from aslora_rpc.transfer import file_chunks
from aslora_rpc.wire import RUN_STATES, payload_info_to_proto


class AdminServicer(admin_pb2_grpc.AdminServicer):
    """Thin: reads come from admin_queries, control goes to the orchestrator."""

    def __init__(self, orchestrator: Orchestrator, model: GlobalModel, export_dir: Path) -> None:
        self.orchestrator = orchestrator
        self.model = model
        self.export_dir = export_dir

    def GetStatus(self, request: pb.GetStatusRequest, context: grpc.ServicerContext) -> pb.GetStatusResponse:
        """The run at a glance."""
        return status_to_proto(admin_queries.status_view(self.orchestrator))

    def ListSilos(self, request: pb.ListSilosRequest, context: grpc.ServicerContext) -> pb.ListSilosResponse:
        """Every registered silo."""
        return pb.ListSilosResponse(
            silos=[silo_to_proto(v) for v in admin_queries.silo_views(self.orchestrator)]
        )

    def GetPrivacyLedger(
        self, request: pb.GetPrivacyLedgerRequest, context: grpc.ServicerContext
    ) -> pb.GetPrivacyLedgerResponse:
        """Reported and recomputed epsilon per silo."""
        return ledger_to_proto(admin_queries.ledger_view(self.orchestrator))

    def Pause(self, request: pb.PauseRequest, context: grpc.ServicerContext) -> pb.ControlResponse:
        """Open no new round after the current one."""
        return pb.ControlResponse(state=RUN_STATES.to_proto(self.orchestrator.pause()))

    def Resume(self, request: pb.ResumeRequest, context: grpc.ServicerContext) -> pb.ControlResponse:
        """Undo a pause."""
        return pb.ControlResponse(state=RUN_STATES.to_proto(self.orchestrator.resume()))

    def Stop(self, request: pb.StopRequest, context: grpc.ServicerContext) -> pb.ControlResponse:
        """End the run and shut the coordinator down."""
        self.orchestrator.stop(request.reason)
        return pb.ControlResponse(state=RUN_STATES.to_proto(self.orchestrator.state))

    def ExportAdapter(
        self, request: pb.ExportAdapterRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportAdapterResponse]:
        """Each file of the export: its header, then its chunks."""
        export_format = EXPORT_FORMATS.from_proto(request.format)
        chunk_bytes = self.orchestrator.config.transport.chunk_bytes
        with exported_files(self.orchestrator, self.model, self.export_dir, export_format) as files:
            for item in files:
                header = pb.ExportedFile(name=item.name, payload=payload_info_to_proto(item.info))
                yield pb.ExportAdapterResponse(file=header)
                for chunk in file_chunks(item.path, chunk_bytes):
                    yield pb.ExportAdapterResponse(chunk=chunk)
