"""The coordinator's side of exact resume, in this process against a real server on loopback: an
identical re-send of an accepted update is acknowledged and not counted again; attempts that closed short
of min_silos are checkpointed, so a restarted coordinator goes on with the next attempt (a new task id)
and keeps their charges; an update that reaches a restarted coordinator before its reopened task was handed
out again is sent back to wait for it; a checkpoint of another configuration is refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner

from aslora.v1 import federation_pb2 as pb
from aslora.v1 import federation_pb2_grpc
from aslora_cli.coordinator import CHECKPOINT_REFUSED_EXIT_CODE, STATE_SUBFOLDER
from aslora_cli.main import app
from aslora_coordinator.service import CoordinatorService
from aslora_coordinator.state import CheckpointError, FileFederationStore, latest_run_checkpoint
from aslora_core.fingerprint import base_model_fingerprint
from aslora_core.serialization import state_from_bytes, update_to_bytes
from aslora_rpc.channels import open_channel
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.errors import error_code_of
from aslora_rpc.messages import Task
from aslora_rpc.protocol import PROTOCOL_VERSION
from aslora_rpc.wire import task_outcome_from_proto
from tests.grpc.helpers import coordinator_tables, load_config, served_run_id
from tests.security.malformed_updates import upload_messages, well_formed_update

CALL_TIMEOUT = 20.0
WAIT_SECONDS = 5.0
DEADLINE_SECONDS = 1.0
POLL_SECONDS = 0.05
LOCAL_STEPS = 2
DATASET_SIZE = 10


def _tables(model_dir: Path, **federation: Any) -> dict[str, dict[str, Any]]:
    return coordinator_tables(
        model_dir, round_deadline_seconds=DEADLINE_SECONDS, max_round_attempts=50, **federation
    )


@pytest.fixture
def stubs() -> Iterator[list[grpc.Channel]]:
    """Channels opened by a test, closed after it."""
    channels: list[grpc.Channel] = []
    yield channels
    for channel in channels:
        channel.close()


def _stub(service: CoordinatorService, channels: list[grpc.Channel]) -> federation_pb2_grpc.FederationStub:
    channel = open_channel(service.server.endpoint, None, insecure=True)
    channels.append(channel)
    return federation_pb2_grpc.FederationStub(channel)


def _register(stub: federation_pb2_grpc.FederationStub, silo: str, model_dir: Path) -> None:
    request = pb.RegisterRequest(
        protocol_version=PROTOCOL_VERSION,
        silo_name=silo,
        base_model_fingerprint=base_model_fingerprint(model_dir),
        dataset_size=DATASET_SIZE,
        run_id=served_run_id(stub),
    )
    stub.Register(request, timeout=CALL_TIMEOUT)


def _task(stub: federation_pb2_grpc.FederationStub, silo: str) -> Task:
    request = pb.WaitForTaskRequest(silo_id=silo, run_id=served_run_id(stub), wait_seconds=WAIT_SECONDS)
    outcome = task_outcome_from_proto(stub.WaitForTask(request, timeout=CALL_TIMEOUT))
    assert isinstance(outcome, Task), outcome
    return outcome


def _failed_attempts(store: FileFederationStore) -> int:
    checkpoint = latest_run_checkpoint(store)
    return 0 if checkpoint is None else checkpoint.failed_attempts


def _wait(condition: Any, what: str, timeout: float = 30.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, f"no {what} after {timeout}s"
        time.sleep(POLL_SECONDS)


def test_an_identical_resend_is_acknowledged_and_a_different_second_update_refused(
    tiny_model_dir: Path, tmp_path: Path, stubs: list[grpc.Channel]
) -> None:
    tables = _tables(tiny_model_dir, min_silos=2)
    tables["federation"]["round_deadline_seconds"] = 60
    service = CoordinatorService(load_config(tmp_path / "c.toml", tables), tmp_path / "work", insecure=True)
    try:
        stub = _stub(service, stubs)
        for silo in ("silo-a", "silo-b"):
            _register(stub, silo, tiny_model_dir)
        task = _task(stub, "silo-a")
        _task(stub, "silo-b")  # silo-b never reports: the round stays open
        download = pb.DownloadAdapterRequest(silo_id="silo-a", task_id=task.task_id)
        chunks = stub.DownloadAdapter(download, timeout=CALL_TIMEOUT)
        state = state_from_bytes(b"".join(chunk.data for chunk in chunks))
        payload = update_to_bytes(well_formed_update("silo-a", float(DATASET_SIZE), state, task.selection))

        def send(data: bytes) -> pb.UploadUpdateResponse:
            response: pb.UploadUpdateResponse = stub.UploadUpdate(
                iter(upload_messages("silo-a", task.task_id, data)), timeout=CALL_TIMEOUT
            )
            return response

        first, again = send(payload), send(payload)
        assert (first.round_index, first.bytes_received) == (task.round_index, len(payload))
        assert (again.round_index, again.bytes_received) == (task.round_index, 0), "acknowledged, not read"
        with pytest.raises(grpc.RpcError) as excinfo:
            send(b"another update")
        assert error_code_of(excinfo.value) is ErrorCode.DUPLICATE_UPDATE
        current = service.orchestrator.current_round
        assert current is not None and sorted(current.received) == ["silo-a"]
        assert current.received["silo-a"].payload_bytes == len(payload)
    finally:
        service.shutdown()


def test_failed_attempts_are_checkpointed_and_a_restart_goes_on_with_the_next_attempt(
    tiny_model_dir: Path, tmp_path: Path, stubs: list[grpc.Channel]
) -> None:
    config = load_config(tmp_path / "c.toml", _tables(tiny_model_dir, min_silos=1))
    store = FileFederationStore(tmp_path / "state")
    first = CoordinatorService(config, tmp_path / "work", insecure=True, store=store)
    try:
        stub = _stub(first, stubs)
        _register(stub, "silo-a", tiny_model_dir)
        handed = _task(stub, "silo-a")  # charged when handed out; silo-a never reports
        _wait(lambda: _failed_attempts(store) >= 1, "checkpoint of a failed attempt")
        first.orchestrator.pause()
        # The attempt open when paused closes at its deadline and is checkpointed; then nothing moves.
        time.sleep(2 * DEADLINE_SECONDS + POLL_SECONDS)
    finally:
        first.shutdown()
    checkpoint = latest_run_checkpoint(store)
    assert checkpoint is not None and checkpoint.rounds_completed == 0
    failed = checkpoint.failed_attempts
    assert handed.task_id.endswith("-r0-a0") and failed >= 1
    (silo,) = checkpoint.silos
    assert sum(event["steps"] for event in silo.ledger["events"]) == LOCAL_STEPS, "a0's charge is kept"

    second = CoordinatorService(config, tmp_path / "work", insecure=True, store=store)
    try:
        assert second.orchestrator.plan.run_id == checkpoint.run_id
        stub = _stub(second, stubs)
        _register(stub, "silo-a", tiny_model_dir)
        again = _task(stub, "silo-a")
        assert again.task_id == f"{checkpoint.run_id}-r0-a{failed}", "a new attempt, never a used task id"
        (entry,) = second.orchestrator.ledger_entries(["silo-a"])
        assert sum(event.steps for event in entry.events) == 2 * LOCAL_STEPS, "both tasks charged, once each"
    finally:
        second.shutdown()


def test_after_a_restart_an_update_counts_only_once_its_task_is_handed_out_again(
    tiny_model_dir: Path, tmp_path: Path, stubs: list[grpc.Channel]
) -> None:
    tables = _tables(tiny_model_dir, min_silos=1)
    tables["federation"]["round_deadline_seconds"] = 60
    config = load_config(tmp_path / "c.toml", tables)
    store = FileFederationStore(tmp_path / "state")
    first = CoordinatorService(config, tmp_path / "work", insecure=True, store=store)
    try:
        stub = _stub(first, stubs)
        _register(stub, "silo-a", tiny_model_dir)
        task = _task(stub, "silo-a")
        download = pb.DownloadAdapterRequest(silo_id="silo-a", task_id=task.task_id)
        state = state_from_bytes(
            b"".join(c.data for c in stub.DownloadAdapter(download, timeout=CALL_TIMEOUT))
        )
    finally:
        first.shutdown()  # before the silo's update arrives: it trained, the coordinator is gone
    payload = update_to_bytes(well_formed_update("silo-a", float(DATASET_SIZE), state, task.selection))

    second = CoordinatorService(config, tmp_path / "work", insecure=True, store=store)
    try:
        stub = _stub(second, stubs)
        _register(stub, "silo-a", tiny_model_dir)
        _wait(lambda: second.orchestrator.current_round is not None, "the reopened round")
        send = iter(upload_messages("silo-a", task.task_id, payload))
        with pytest.raises(grpc.RpcError) as excinfo:
            stub.UploadUpdate(send, timeout=CALL_TIMEOUT)
        assert isinstance(excinfo.value, grpc.Call)
        assert excinfo.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error_code_of(excinfo.value) is ErrorCode.NOT_HANDED_OUT
        assert _task(stub, "silo-a").task_id == task.task_id, "the same task, reopened"
        response = stub.UploadUpdate(
            iter(upload_messages("silo-a", task.task_id, payload)), timeout=CALL_TIMEOUT
        )
        assert (response.round_index, response.bytes_received) == (task.round_index, len(payload))
        (entry,) = second.orchestrator.ledger_entries(["silo-a"])
        assert sum(event.steps for event in entry.events) == LOCAL_STEPS, "charged once, when handed out"
    finally:
        second.shutdown()


def test_a_checkpoint_of_another_configuration_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = FileFederationStore(tmp_path / "work" / STATE_SUBFOLDER)
    config = load_config(tmp_path / "a.toml", _tables(tiny_model_dir, seed=1))
    service = CoordinatorService(config, tmp_path / "work", insecure=True, store=store)
    _wait(lambda: latest_run_checkpoint(store) is not None, "the initial checkpoint")
    service.shutdown()
    other = load_config(tmp_path / "b.toml", _tables(tiny_model_dir, seed=2))
    with pytest.raises(CheckpointError, match="another run configuration"):
        CoordinatorService(other, tmp_path / "work", insecure=True, store=store)
    # The command line says so and exits with its own code, before it serves anything.
    arguments = ["coordinator", "serve", "--config", str(tmp_path / "b.toml"), "--insecure"]
    outcome = CliRunner().invoke(app, [*arguments, "--state-dir", str(tmp_path / "work")])
    assert outcome.exit_code == CHECKPOINT_REFUSED_EXIT_CODE, outcome.output
    assert "another run configuration" in outcome.output


def test_an_unreadable_checkpoint_refuses_the_start_and_leaves_the_run_resumable(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    store = FileFederationStore(tmp_path / "work" / STATE_SUBFOLDER)
    config = load_config(tmp_path / "c.toml", _tables(tiny_model_dir))
    service = CoordinatorService(config, tmp_path / "work", insecure=True, store=store)
    _wait(lambda: latest_run_checkpoint(store) is not None, "the initial checkpoint")
    service.shutdown()
    [run] = store.load_runs()
    checkpoint = store.folder / "runs" / run.run_id / "checkpoint.safetensors"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        CoordinatorService(config, tmp_path / "work", insecure=True, store=store)
    [after] = store.load_runs()
    assert not after.state.ended, "the run is not failed for its unreadable checkpoint"
