"""Runs that recover, in this process against a real server on loopback: a silo that declined its task
registers again with another record count, is planned for its new q and rejoins (the ledger keeps the task
it was handed before), while it is out the status names it; an evicted silo gets no further task, the open
round stops waiting for it, and it may not register again; `status --watch` refreshes until the run ends."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from aslora.v1 import federation_pb2 as pb
from aslora.v1 import federation_pb2_grpc
from aslora_cli.main import app
from aslora_coordinator.service import CoordinatorService
from aslora_core.config import DEFAULT_ACCOUNTANT
from aslora_core.fingerprint import base_model_fingerprint
from aslora_core.privacy import PrivacyEvent, epsilon_spent
from aslora_core.privacy.planning import expected_sample_rate
from aslora_rpc.channels import open_channel
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.errors import error_code_of
from aslora_rpc.messages import NoTaskYet, RunState, Task, TaskOutcome
from aslora_rpc.protocol import PROTOCOL_VERSION
from aslora_rpc.wire import task_outcome_from_proto
from tests.grpc.helpers import coordinator_tables, load_config, served_run_id

CALL_TIMEOUT = 20.0
WAIT_SECONDS = 2.0
DEADLINE_SECONDS = 1.0
POLL_SECONDS = 0.05
STEP_TIMEOUT_SECONDS = 30.0
LOCAL_STEPS = 2
BATCH_SIZE = 8
FIRST_SIZE = 10
FIXED_SIZE = 24
DELTA = 1e-5
TARGET_EPSILON = 8.0
BAD_ROW = "row 7: label 'positive' is not one of the run's labels"
CANCEL_AFTER_SECONDS = 2.0
"""The run is cancelled this long after the watch starts: time for it to show the waiting run first."""
WATCH_INTERVAL_SECONDS = 0.1
Stub = federation_pb2_grpc.FederationStub


@pytest.fixture
def channels() -> Iterator[list[grpc.Channel]]:
    """Channels opened by a test, closed after it."""
    opened: list[grpc.Channel] = []
    yield opened
    for channel in opened:
        channel.close()


def _service(model_dir: Path, work: Path, min_silos: int) -> CoordinatorService:
    tables = coordinator_tables(
        model_dir, min_silos=min_silos, round_deadline_seconds=DEADLINE_SECONDS, max_round_attempts=50
    )
    # A target epsilon: each silo's sigma is planned for its own q.
    tables["privacy"] = {"target_epsilon": TARGET_EPSILON, "delta": DELTA, "test_mode": True}
    return CoordinatorService(load_config(work / "c.toml", tables), work / "work", insecure=True)


def _stub(service: CoordinatorService, channels: list[grpc.Channel]) -> Stub:
    channel = open_channel(service.server.endpoint, None, insecure=True)
    channels.append(channel)
    return federation_pb2_grpc.FederationStub(channel)


def _register(stub: Stub, silo: str, model_dir: Path, size: int) -> None:
    request = pb.RegisterRequest(
        protocol_version=PROTOCOL_VERSION,
        silo_name=silo,
        base_model_fingerprint=base_model_fingerprint(model_dir),
        dataset_size=size,
        run_id=served_run_id(stub),
    )
    stub.Register(request, timeout=CALL_TIMEOUT)


def _outcome(stub: Stub, silo: str) -> TaskOutcome:
    request = pb.WaitForTaskRequest(silo_id=silo, run_id=served_run_id(stub), wait_seconds=WAIT_SECONDS)
    return task_outcome_from_proto(stub.WaitForTask(request, timeout=CALL_TIMEOUT))


def _task(stub: Stub, silo: str) -> Task:
    give_up = time.monotonic() + STEP_TIMEOUT_SECONDS
    while not isinstance(outcome := _outcome(stub, silo), Task):
        assert time.monotonic() < give_up, f"no task for {silo}"
    return outcome


def _wait(condition: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + STEP_TIMEOUT_SECONDS
    while not condition():
        assert time.monotonic() < give_up, f"no {what} after {STEP_TIMEOUT_SECONDS}s"
        time.sleep(POLL_SECONDS)


def _admin_text(service: CoordinatorService, *arguments: str) -> str:
    address = ["--address", f"127.0.0.1:{service.server.endpoint.port}", "--insecure", "-o", "json"]
    outcome = CliRunner().invoke(app, ["coordinator", *arguments, *address])
    assert outcome.exit_code == 0, outcome.output
    return outcome.stdout


def _admin(service: CoordinatorService, *arguments: str) -> object:
    return json.loads(_admin_text(service, *arguments))


def test_a_silo_that_declined_rejoins_with_another_record_count_and_keeps_its_charges(
    tiny_model_dir: Path, tmp_path: Path, channels: list[grpc.Channel]
) -> None:
    service = _service(tiny_model_dir, tmp_path, min_silos=2)
    try:
        stub = _stub(service, channels)
        for silo in ("silo-a", "silo-b"):
            _register(stub, silo, tiny_model_dir, FIRST_SIZE)
        _task(stub, "silo-a")  # silo-a never reports: every attempt closes at its deadline
        first = _task(stub, "silo-b")
        decline = pb.DeclineTaskRequest(silo_id="silo-b", task_id=first.task_id, reason=BAD_ROW)
        stub.DeclineTask(decline, timeout=CALL_TIMEOUT)
        expected = f"waiting: 1 of 2 eligible silos; silo-b declined: {BAD_ROW}"
        _wait(lambda: service.admin.status("").waiting_for == expected, "status naming the decline")
        shown = _admin(service, "status")
        assert isinstance(shown, dict) and shown["waiting_for"] == expected
        assert shown["state"] == RunState.WAITING_FOR_SILOS.value

        _register(stub, "silo-b", tiny_model_dir, FIXED_SIZE)
        again = _task(stub, "silo-b")
        assert again.task_id != first.task_id
        assert again.sample_rate == expected_sample_rate(BATCH_SIZE, FIXED_SIZE) != first.sample_rate
        assert again.noise_multiplier != first.noise_multiplier, "sigma planned for the new q"
        (silo_b,) = [s for s in service.admin.silos("") if s.silo_id == "silo-b"]
        assert (silo_b.dataset_size, silo_b.declined_reason) == (FIXED_SIZE, None)

        # Both tasks handed to silo-b stay charged, each at the q and sigma it was planned for.
        events = [
            PrivacyEvent(task.noise_multiplier, task.sample_rate, LOCAL_STEPS) for task in (first, again)
        ]
        (entry,) = [e for e in service.admin.ledger("").entries if e.silo_id == "silo-b"]
        assert entry.epsilon_recomputed == pytest.approx(epsilon_spent(events, DELTA, DEFAULT_ACCOUNTANT))
    finally:
        service.shutdown()


def test_an_evicted_silo_gets_no_further_task_and_may_not_register_again(
    tiny_model_dir: Path, tmp_path: Path, channels: list[grpc.Channel]
) -> None:
    service = _service(tiny_model_dir, tmp_path, min_silos=1)
    try:
        stub = _stub(service, channels)
        for silo in ("silo-a", "silo-b"):
            _register(stub, silo, tiny_model_dir, FIRST_SIZE)
        _task(stub, "silo-a")
        task_b = _task(stub, "silo-b")
        shown = _admin(service, "evict", "--silo", "silo-b", "--reason", "sends malformed updates")
        assert shown == {"action": "evict silo-b", "state": RunState.RUNNING.value}
        current = service.orchestrator.current_round
        assert current is not None and current.pending == {"silo-a"}, "the round no longer waits for it"
        assert isinstance(_outcome(stub, "silo-b"), NoTaskYet)
        download = pb.DownloadAdapterRequest(silo_id="silo-b", task_id=task_b.task_id)
        with pytest.raises(grpc.RpcError) as late:
            list(stub.DownloadAdapter(download, timeout=CALL_TIMEOUT))
        assert error_code_of(late.value) is ErrorCode.ROUND_CLOSED, "its task no longer counts"
        with pytest.raises(grpc.RpcError) as refused:
            _register(stub, "silo-b", tiny_model_dir, FIRST_SIZE)
        assert error_code_of(refused.value) is ErrorCode.SILO_EVICTED
        silos = _admin(service, "silos")
        assert isinstance(silos, list)
        (silo_b,) = [s for s in silos if s["silo_id"] == "silo-b"]
        assert silo_b["evicted"] and silo_b["declined_reason"] == "sends malformed updates"

        def next_attempt() -> bool:
            following = service.orchestrator.current_round
            return following is not None and following is not current

        _wait(next_attempt, "the next attempt")
        following = service.orchestrator.current_round
        assert following is not None and set(following.tasks) == {"silo-a"}
    finally:
        service.shutdown()


def test_status_watch_refreshes_until_the_run_ends(tiny_model_dir: Path, tmp_path: Path) -> None:
    service = _service(tiny_model_dir, tmp_path, min_silos=1)
    try:
        run_id = service.orchestrator.plan.run_id
        cancel = threading.Timer(CANCEL_AFTER_SECONDS, service.admin.cancel, (run_id, "a test"))
        cancel.start()
        shown = _admin_text(service, "status", "--watch", "--interval", str(WATCH_INTERVAL_SECONDS))
        cancel.join()
    finally:
        service.shutdown()
    documents = []
    decoder, position = json.JSONDecoder(), 0
    while position < len(shown):
        document, position = decoder.raw_decode(shown, position)
        documents.append(document)
        position = len(shown) - len(shown[position:].lstrip())
    assert len(documents) >= 2, "shown, then refreshed"
    assert documents[0]["waiting_for"] == "waiting: 0 of 1 eligible silos"
    assert [d["state"] for d in documents[:-1]] == [RunState.WAITING_FOR_SILOS.value] * (len(documents) - 1)
    assert documents[-1]["state"] == RunState.CANCELLED.value and documents[-1]["waiting_for"] == ""
