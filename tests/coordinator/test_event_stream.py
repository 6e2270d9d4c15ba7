"""The coordinator's lifecycle events: a bounded log that late watchers read from its oldest kept event, and
the WatchEvents stream of a run on loopback (the recent events first, then each as it happens, ending at
shutdown)."""

from __future__ import annotations

from pathlib import Path

from aslora.v1 import federation_pb2 as pb
from aslora.v1 import federation_pb2_grpc
from aslora_coordinator.admin_client import AdminClient
from aslora_coordinator.event_log import EventKind, EventLog
from aslora_coordinator.service import CoordinatorService
from aslora_core.fingerprint import base_model_fingerprint
from aslora_rpc.channels import open_channel
from aslora_rpc.protocol import PROTOCOL_VERSION
from tests.grpc.helpers import coordinator_tables, load_config, served_run_id

CALL_TIMEOUT = 20.0
DEADLINE_SECONDS = 1.0
CAPACITY = 3
APPENDED = 5


def test_the_log_keeps_the_newest_events_and_a_closed_log_answers_at_once() -> None:
    log = EventLog(capacity=CAPACITY)
    for index in range(APPENDED):
        log.append("run", EventKind.ROUND_OPENED, f"round {index + 1}")
    kept, closed = log.after(0, timeout=0.0)
    assert [event.sequence for event in kept] == list(range(APPENDED - CAPACITY + 1, APPENDED + 1))
    assert not closed
    assert log.after(APPENDED, timeout=0.0) == ([], False), "nothing newer: the wait times out"
    log.close()
    assert log.after(APPENDED, timeout=60.0) == ([], True), "closed: no wait"


def test_a_late_watcher_gets_the_runs_lifecycle_then_follows_it_until_shutdown(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    tables = coordinator_tables(tiny_model_dir, min_silos=1, round_deadline_seconds=DEADLINE_SECONDS)
    service = CoordinatorService(load_config(tmp_path / "c.toml", tables), tmp_path / "work", insecure=True)
    channel = open_channel(service.server.endpoint, None, insecure=True)
    try:
        stub = federation_pb2_grpc.FederationStub(channel)
        run_id = served_run_id(stub)
        registration = pb.RegisterRequest(
            protocol_version=PROTOCOL_VERSION,
            silo_name="silo-a",
            base_model_fingerprint=base_model_fingerprint(tiny_model_dir),
            dataset_size=10,
            run_id=run_id,
        )
        stub.Register(registration, timeout=CALL_TIMEOUT)
        stream = AdminClient(channel).events()
        seen = []
        for event in stream:
            seen.append(event)
            if event.kind is EventKind.ROUND_OPENED:
                break
        assert [event.kind for event in seen] == [
            EventKind.RUN_STARTED,
            EventKind.LISTENING,
            EventKind.SILO_REGISTERED,
            EventKind.ROUND_OPENED,
        ], "the events kept before the watcher came"
        service.admin.evict("silo-a", "a test")
        for event in stream:
            seen.append(event)
            if event.kind is EventKind.ROUND_CLOSED:
                break
        service.shutdown()
        seen.extend(stream)  # ends: the coordinator shut down
    finally:
        service.shutdown()
        channel.close()
    kinds = [event.kind for event in seen]
    assert kinds[4:] == [EventKind.SILO_EVICTED, EventKind.ROUND_CLOSED, EventKind.SHUTTING_DOWN]
    assert [event.sequence for event in seen] == sorted({event.sequence for event in seen})
    assert {
        event.run_id for event in seen if event.kind not in (EventKind.LISTENING, EventKind.SHUTTING_DOWN)
    } == {run_id}
    assert seen[2].message.startswith("silo silo-a registered with 10 records")
    assert seen[5].message.startswith("round 1 attempt 0 closed with 0 update(s) of 1")
