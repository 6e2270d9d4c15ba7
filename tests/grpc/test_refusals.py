"""What the coordinator refuses, with which status: protocol version, base model, late updates."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2
from safetensors.torch import load_file, save_file

from aslora.v1 import federation_pb2 as pb
from aslora.v1 import federation_pb2_grpc
from aslora_coordinator import admin_queries
from aslora_coordinator.service import CoordinatorService
from aslora_core.config import ConfigError
from aslora_core.fingerprint import base_model_fingerprint
from aslora_core.round_numbers import round_number
from aslora_rpc.channels import open_channel
from aslora_rpc.endpoints import Endpoint, EndpointError
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.errors import error_code_of
from aslora_rpc.protocol import PROTOCOL_VERSION
from aslora_silo.agent import SiloAgent
from aslora_silo.config import load_silo_config
from tests.grpc.helpers import (
    coordinator_tables,
    load_config,
    served_run_id,
    silo_privacy_toml,
    write_tsv,
)

CALL_TIMEOUT = 20.0
DEADLINE_SECONDS = 1.0
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"


@pytest.fixture
def service(tiny_model_dir: Path, tmp_path: Path) -> Iterator[CoordinatorService]:
    """A coordinator in this process; each round attempt lasts one second, min_silos 1."""
    tables = coordinator_tables(
        tiny_model_dir, round_deadline_seconds=DEADLINE_SECONDS, max_round_attempts=50
    )
    coordinator = CoordinatorService(
        load_config(tmp_path / "c.toml", tables), tmp_path / "work", insecure=True
    )
    yield coordinator
    coordinator.shutdown()


@pytest.fixture
def stub(service: CoordinatorService) -> Iterator[federation_pb2_grpc.FederationStub]:
    channel = open_channel(service.server.endpoint, None, insecure=True)
    yield federation_pb2_grpc.FederationStub(channel)
    channel.close()


def _register(
    stub: federation_pb2_grpc.FederationStub, version: int, fingerprint: str
) -> pb.RegisterResponse:
    request = pb.RegisterRequest(
        protocol_version=version,
        silo_name="silo-a",
        base_model_fingerprint=fingerprint,
        dataset_size=10,
        run_id=served_run_id(stub),
    )
    response: pb.RegisterResponse = stub.Register(request, timeout=CALL_TIMEOUT)
    return response


def _rpc_error(excinfo: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.Call:
    error = excinfo.value
    assert isinstance(error, grpc.Call)
    return error


def test_an_incompatible_protocol_version_is_refused(
    stub: federation_pb2_grpc.FederationStub, tiny_model_dir: Path
) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        _register(stub, PROTOCOL_VERSION + 1, base_model_fingerprint(tiny_model_dir))
    error = _rpc_error(excinfo)
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_code_of(excinfo.value) is ErrorCode.PROTOCOL_MISMATCH
    assert f"version {PROTOCOL_VERSION + 1}" in (error.details() or "")


def test_a_wrong_base_model_fingerprint_is_refused(stub: federation_pb2_grpc.FederationStub) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        _register(stub, PROTOCOL_VERSION, "0" * 64)
    error = _rpc_error(excinfo)
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_code_of(excinfo.value) is ErrorCode.FINGERPRINT_MISMATCH
    assert "base model fingerprint differs" in (error.details() or "")


def test_a_late_update_for_a_closed_round_is_rejected(
    stub: federation_pb2_grpc.FederationStub, tiny_model_dir: Path
) -> None:
    _register(stub, PROTOCOL_VERSION, base_model_fingerprint(tiny_model_dir))
    wait = pb.WaitForTaskRequest(silo_id="silo-a", run_id=served_run_id(stub), wait_seconds=5)
    first = stub.WaitForTask(wait, timeout=CALL_TIMEOUT)
    assert first.WhichOneof("outcome") == "task"
    # Nobody reports: the attempt closes at its deadline and the round is redone under a new task id.
    second = first
    while second.WhichOneof("outcome") != "task" or second.task.task_id == first.task.task_id:
        second = stub.WaitForTask(wait, timeout=CALL_TIMEOUT)
    header = pb.UploadHeader(silo_id="silo-a", task_id=first.task.task_id, epsilon_spent=0.0)
    header.update.size_bytes = 4
    header.update.sha256 = bytes(32)
    messages = iter([pb.UploadUpdateRequest(header=header), pb.UploadUpdateRequest(chunk=b"late")])
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.UploadUpdate(messages, timeout=CALL_TIMEOUT)
    error = _rpc_error(excinfo)
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_code_of(excinfo.value) is ErrorCode.ROUND_CLOSED
    assert f"round {round_number(first.task.round_index)}" in (error.details() or "")


def test_the_silo_agent_declines_a_run_of_another_base_model_and_the_operator_sees_why(
    service: CoordinatorService, tiny_model_dir: Path, tmp_path: Path
) -> None:
    other_model = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other_model)
    weights = load_file(other_model / "model.safetensors")
    first = sorted(weights)[0]
    weights[first] = weights[first] + torch.ones_like(weights[first])
    save_file(weights, other_model / "model.safetensors", metadata={"format": "pt"})
    config = tmp_path / "silo.toml"
    config.write_text(
        f'model_path = "{other_model}"\n[silo]\nname = "silo-b"\n'
        f'[coordinator]\naddress = "{service.server.endpoint}"\n'
        f'[data]\ntrain_path = "{write_tsv(tmp_path / "train.tsv", 12)}"\n[health]\nlisten = "127.0.0.1:0"\n'
        + silo_privacy_toml()
    )
    agent = SiloAgent(load_silo_config(config), tmp_path / "silo-state", insecure=True)
    end = agent.run(max_runs=1)
    assert end is not None and "base model" in end.reason and "is not this silo's model" in end.reason
    [view] = admin_queries.silo_views(service.orchestrator.observe())
    assert view.silo_id == "silo-b" and view.dataset_size == 0, "never counted"
    assert view.declined_reason is not None and "is not this silo's model" in view.declined_reason


def test_plaintext_is_refused_off_loopback() -> None:
    with pytest.raises(EndpointError, match="loopback"):
        open_channel(Endpoint.parse("192.0.2.1:7443"), None, insecure=True)


def test_unknown_config_keys_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    tables = coordinator_tables(tiny_model_dir)
    tables["privacy"]["epsilon"] = 3
    with pytest.raises(ConfigError, match=r"\[privacy\]: unknown key\(s\) epsilon"):
        load_config(tmp_path / "c.toml", tables)


def test_both_ports_answer_health_checks_with_serving(service: CoordinatorService) -> None:
    for endpoint in (service.server.endpoint, service.server.health.endpoint):
        channel = open_channel(endpoint, None, insecure=True)
        check = channel.unary_unary(
            HEALTH_CHECK_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        response = check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
        channel.close()
        assert response.status == health_pb2.HealthCheckResponse.SERVING
