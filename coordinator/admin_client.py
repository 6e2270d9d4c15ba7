"""The operator's client of the admin service: its queries (coordinator/admin_reader.py) and its actions;
plain views in, files out (protobuf stays in here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc

from aslora.v1 import admin_pb2 as pb
from aslora.v1 import admin_pb2_grpc
from aslora.v1 import federation_pb2 as pb_federation
from aslora_coordinator.admin_reader import DEFAULT_TIMEOUT_SECONDS, AdminReader
from aslora_coordinator.admin_wire import EXPORT_FORMATS, event_from_proto
from aslora_coordinator.event_log import FederationEvent
from aslora_coordinator.export_format import ExportFormat
from aslora_rpc.messages import RunState
from aslora_rpc.transfer import PayloadInfo, TransferError, TransferFault, receive_payload
from aslora_rpc.wire import RUN_STATES, payload_info_from_proto

EXPORT_TIMEOUT_SECONDS = 600.0
MAX_EXPORT_FILE_BYTES = 1 << 40


class AdminClient(AdminReader):
    """Calls the coordinator's admin service over an open channel: its queries and its actions."""

    def __init__(self, channel: grpc.Channel, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        super().__init__(channel, timeout_seconds)
        self._stub = admin_pb2_grpc.AdminStub(channel)

    def submit(self, run_toml: str, source: str) -> tuple[str, int]:
        """Queue a run; its id and how many runs are ahead of it."""
        request = pb.SubmitRunRequest(run_toml=run_toml, source=source)
        response = self._stub.SubmitRun(request, timeout=self._timeout)
        return response.run_id, response.queued_ahead

    def cancel(self, run_id: str, reason: str) -> RunState:
        """Cancel a queued or active run; its state."""
        request = pb.CancelRunRequest(run_id=run_id, reason=reason)
        return RUN_STATES.from_proto(self._stub.CancelRun(request, timeout=self._timeout).state)

    def pause(self) -> RunState:
        """Open no new round after the current one."""
        return RUN_STATES.from_proto(self._stub.Pause(pb.PauseRequest(), timeout=self._timeout).state)

    def resume(self) -> RunState:
        """Undo a pause."""
        return RUN_STATES.from_proto(self._stub.Resume(pb.ResumeRequest(), timeout=self._timeout).state)

    def events(self, after_sequence: int = 0) -> Iterator[FederationEvent]:
        """The coordinator's lifecycle events: the recent ones it keeps, then each as it happens, until it
        shuts down (no time limit: the caller stops reading when it wants)."""
        request = pb.WatchEventsRequest(after_sequence=after_sequence)
        for message in self._stub.WatchEvents(request):
            yield event_from_proto(message)

    def evict(self, silo_id: str, reason: str) -> RunState:
        """Take a silo out of the active run; the run's state."""
        request = pb.EvictSiloRequest(silo_id=silo_id, reason=reason)
        return RUN_STATES.from_proto(self._stub.EvictSilo(request, timeout=self._timeout).state)

    def shutdown(self, reason: str) -> RunState | None:
        """Stop the service; the active run's state (it resumes when the service starts again), if any."""
        state = self._stub.Shutdown(pb.ShutdownRequest(reason=reason), timeout=self._timeout).state
        return RUN_STATES.from_proto(state) if state != pb_federation.RUN_STATE_UNSPECIFIED else None

    def export(self, export_format: ExportFormat, out_dir: Path, run_id: str = "") -> list[Path]:
        """Download a run's global adapter (default: the active or latest run) into `out_dir`, each file
        verified; return the files."""
        out_dir.mkdir(parents=True, exist_ok=True)
        responses = self._stub.ExportAdapter(
            pb.ExportAdapterRequest(format=EXPORT_FORMATS.to_proto(export_format), run_id=run_id),
            timeout=EXPORT_TIMEOUT_SECONDS,
        )
        written: list[Path] = []
        stream = _Lookahead(responses)
        while (header := stream.next_header()) is not None:
            name, info = header
            if Path(name).name != name or name.startswith("."):
                raise TransferError(TransferFault.MALFORMED, f"refusing export file name {name!r}")
            spooled = receive_payload(stream.chunks(), info, out_dir, f".{name}.", MAX_EXPORT_FILE_BYTES)
            written.append(spooled.path.replace(out_dir / name))
        return written


class _Lookahead:
    """Splits the export stream into (header, chunks) groups."""

    def __init__(self, responses: Iterator[pb.ExportAdapterResponse]) -> None:
        self._responses = responses
        self._pending: pb.ExportAdapterResponse | None = next(responses, None)

    def next_header(self) -> tuple[str, PayloadInfo] | None:
        message = self._pending
        if message is None:
            return None
        if message.WhichOneof("part") != "file":
            raise TransferError(TransferFault.MALFORMED, "export chunk without a file header")
        self._pending = next(self._responses, None)
        return message.file.name, payload_info_from_proto(message.file.payload)

    def chunks(self) -> Iterator[bytes]:
        while self._pending is not None and self._pending.WhichOneof("part") == "chunk":
            yield self._pending.chunk
            self._pending = next(self._responses, None)
