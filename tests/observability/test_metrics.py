"""The coordinator's and the silos' metrics after a real short run, read from their own HTTP endpoints;
and the outcome label of refused uploads, from a real coordinator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from aslora.v1 import federation_pb2 as pb
from aslora.v1 import federation_pb2_grpc
from aslora_coordinator.metrics import CoordinatorMetrics, UpdateOutcome
from aslora_coordinator.service import CoordinatorService
from aslora_core.fingerprint import base_model_fingerprint
from aslora_rpc.channels import open_channel
from aslora_rpc.protocol import PROTOCOL_VERSION
from aslora_silo.metrics import PORT_FILE, SiloMetrics
from tests.grpc.helpers import coordinator_tables, load_config, served_run_id
from tests.observability.federation import LOCAL_STEPS, ROUNDS, SHARD_SIZES, SILO_NAMES, ShortRun
from tests.observability.scrape import names, scrape, value

CALL_TIMEOUT = 20.0
DEADLINE_SECONDS = 1.0


def test_the_coordinator_counts_rounds_updates_and_each_silos_epsilon(short_run: ShortRun) -> None:
    samples = scrape(short_run.coordinator_target)
    assert value(samples, "aslora_rounds_completed_total") == ROUNDS
    assert value(samples, "aslora_round_duration_seconds_count") == ROUNDS
    assert value(samples, "aslora_aggregation_seconds_count") == ROUNDS
    assert value(samples, "aslora_silos_connected") == len(SILO_NAMES)
    assert value(samples, "aslora_updates_total", outcome="accepted") == ROUNDS * len(SILO_NAMES)
    for outcome in ("rejected", "late", "duplicate", "declined"):
        assert value(samples, "aslora_updates_total", outcome=outcome) == 0
    assert value(samples, "aslora_update_bytes_total") > 0
    assert 0.0 <= value(samples, "aslora_selection_b_fraction") <= 1.0
    epsilons = {silo: value(samples, "aslora_privacy_epsilon", silo=silo) for silo in SILO_NAMES}
    assert all(epsilon > 0 for epsilon in epsilons.values())
    # The smaller shard samples a larger fraction per step, and so spends more.
    assert epsilons[SILO_NAMES[0]] > epsilons[SILO_NAMES[1]]
    assert SHARD_SIZES[0] < SHARD_SIZES[1]


def test_each_silo_serves_its_own_steps_throughput_and_epsilon(short_run: ShortRun) -> None:
    coordinator = scrape(short_run.coordinator_target)
    for silo, target in short_run.silo_targets.items():
        samples = scrape(target)
        assert value(samples, "aslora_silo_dp_steps_total") == ROUNDS * LOCAL_STEPS
        assert value(samples, "aslora_silo_samples_per_second") > 0
        # The silo's own accountant and the coordinator's recomputation see the same (sigma, q, steps).
        assert value(samples, "aslora_silo_epsilon") == pytest.approx(
            value(coordinator, "aslora_privacy_epsilon", silo=silo), rel=1e-9
        )
        # Each process exposes only its own families.
        assert not any(
            name.startswith("aslora_") and not name.startswith("aslora_silo_") for name in names(samples)
        )
    assert not any(name.startswith("aslora_silo_") for name in names(coordinator))


def test_the_bound_metrics_ports_are_written_for_launchers(short_run: ShortRun, tmp_path: Path) -> None:
    endpoint = short_run.service.metrics_endpoint
    assert endpoint is not None
    port_file = short_run.service.config.service.server.port_file
    assert port_file is not None
    assert json.loads(port_file.read_text())["metrics"] == endpoint.endpoint.port > 0
    for agent in short_run.agents:
        assert agent.metrics_endpoint is not None
        written = json.loads((agent.state_dir / PORT_FILE).read_text())
        assert written == {"metrics": agent.metrics_endpoint.endpoint.port}


def test_registries_are_per_instance_so_several_live_in_one_process() -> None:
    first, second = CoordinatorMetrics(), CoordinatorMetrics()
    first.update(UpdateOutcome.ACCEPTED, 10)
    assert first.registry.get_sample_value("aslora_update_bytes_total") == 10
    assert second.registry.get_sample_value("aslora_update_bytes_total") == 0
    silo = SiloMetrics()
    assert silo.registry.get_sample_value("aslora_rounds_completed_total") is None
    assert first.registry.get_sample_value("aslora_silo_dp_steps_total") is None


@pytest.fixture
def coordinator(tiny_model_dir: Path, tmp_path: Path) -> Iterator[CoordinatorService]:
    """A real coordinator whose round attempts close after one second, serving metrics on loopback."""
    tables = coordinator_tables(
        tiny_model_dir, round_deadline_seconds=DEADLINE_SECONDS, max_round_attempts=50
    )
    tables["metrics"] = {"listen": "127.0.0.1:0"}
    service = CoordinatorService(load_config(tmp_path / "c.toml", tables), tmp_path / "work", insecure=True)
    yield service
    service.shutdown()


def test_refused_uploads_are_counted_by_outcome(
    coordinator: CoordinatorService, tiny_model_dir: Path
) -> None:
    channel = open_channel(coordinator.server.endpoint, None, insecure=True)
    stub = federation_pb2_grpc.FederationStub(channel)
    try:
        stub.Register(
            pb.RegisterRequest(
                protocol_version=PROTOCOL_VERSION,
                silo_name="silo-a",
                base_model_fingerprint=base_model_fingerprint(tiny_model_dir),
                dataset_size=10,
                run_id=served_run_id(stub),
            ),
            timeout=CALL_TIMEOUT,
        )
        wait = pb.WaitForTaskRequest(silo_id="silo-a", run_id=served_run_id(stub), wait_seconds=5)
        first = stub.WaitForTask(wait, timeout=CALL_TIMEOUT)
        assert first.WhichOneof("outcome") == "task"
        second = first
        while second.WhichOneof("outcome") != "task" or second.task.task_id == first.task.task_id:
            second = stub.WaitForTask(wait, timeout=CALL_TIMEOUT)
        for task_id in (first.task.task_id, "no-such-task"):  # a closed round's task, then a made-up one
            header = pb.UploadHeader(silo_id="silo-a", task_id=task_id, epsilon_spent=0.0)
            header.update.size_bytes = 4
            header.update.sha256 = bytes(32)
            requests = iter([pb.UploadUpdateRequest(header=header), pb.UploadUpdateRequest(chunk=b"late")])
            with pytest.raises(grpc.RpcError):
                stub.UploadUpdate(requests, timeout=CALL_TIMEOUT)
    finally:
        channel.close()
    assert coordinator.metrics_endpoint is not None
    samples = scrape(coordinator.metrics_endpoint.endpoint.target)
    assert value(samples, "aslora_updates_total", outcome="late") == 1
    assert value(samples, "aslora_updates_total", outcome="rejected") == 1
    assert value(samples, "aslora_updates_total", outcome="accepted") == 0
    assert value(samples, "aslora_update_bytes_total") == 0
