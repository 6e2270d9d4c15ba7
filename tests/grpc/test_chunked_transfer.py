"""A 256 MiB adapter goes up and down intact through a real gRPC server on loopback, and the receiving
process's peak memory grows by at most twice the payload (DESIGN 4: never more than two copies)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from aslora.v1 import federation_pb2_grpc
from aslora_coordinator.config import SecuritySettings, ServerSettings, TransportSettings
from aslora_coordinator.federation_servicer import FederationServicer
from aslora_coordinator.server import start_server
from aslora_core.factors import AdapterState, Factor, LayerFactors, SiloUpdate
from aslora_core.serialization import state_to_bytes, update_to_bytes
from aslora_rpc.channels import open_channel
from aslora_rpc.endpoints import Endpoint
from aslora_rpc.messages import Enrollment, Registration, RunState, TaskOutcome, UploadAnnouncement
from aslora_rpc.transfer import SpooledPayload, write_payload
from aslora_silo.client import CoordinatorClient
from aslora_silo.retry import Backoff
from tests.grpc.transfer_peer import state_digest, update_digest

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20
LAYERS = 4
ROWS, COLUMNS = 2048, 4096
"""Four layers of two 32 MiB float32 factors: a 256 MiB payload."""
MIN_PAYLOAD_BYTES = 256 * MIB
PEER_TIMEOUT_SECONDS = 240
PEER_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _tensors(seed: int) -> dict[str, LayerFactors]:
    generator = torch.Generator().manual_seed(seed)
    return {
        f"layer.{i}": LayerFactors(
            a=torch.randn(ROWS, COLUMNS, generator=generator),
            b=torch.randn(COLUMNS, ROWS, generator=generator),
        )
        for i in range(LAYERS)
    }


def _head() -> dict[str, torch.Tensor]:
    return {"classifier.weight": torch.ones(2, 8)}


def _update(layers: dict[str, LayerFactors]) -> SiloUpdate:
    factors = {name: {Factor.A: pair.a, Factor.B: pair.b} for name, pair in layers.items()}
    return SiloUpdate(silo_id="silo", weight=1.0, factors=factors, head=_head())


def _peer(*arguments: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.grpc.transfer_peer", *arguments]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO, env=PEER_ENV)


def _client(port: int) -> Iterator[CoordinatorClient]:
    channel = open_channel(Endpoint("127.0.0.1", port), None, insecure=True)
    yield CoordinatorClient(channel, Backoff(0.1, 1.0, 60.0))
    channel.close()


@pytest.mark.timeout(PEER_TIMEOUT_SECONDS)
def test_a_256_mib_update_goes_up_intact_and_the_receiver_holds_at_most_two_copies(tmp_path: Path) -> None:
    update = _update(_tensors(seed=1))
    payload = write_payload(update_to_bytes(update), tmp_path, "update-")
    assert payload.info.size_bytes >= MIN_PAYLOAD_BYTES
    warm_up = write_payload(update_to_bytes(_small_update()), tmp_path, "warm-up-")
    peer = _peer("receive-upload", str(tmp_path / "peer"), str(payload.info.size_bytes))
    try:
        assert peer.stdout is not None
        port = json.loads(peer.stdout.readline())["port"]
        for client in _client(port):
            client.upload_update(UploadAnnouncement("silo", "t", warm_up.info, 0.0), warm_up, MIB)
            client.upload_update(UploadAnnouncement("silo", "t", payload.info, 0.0), payload, MIB)
        report = json.loads(peer.stdout.readline())
        peer.wait(timeout=PEER_TIMEOUT_SECONDS)
    finally:
        peer.kill()
    assert report["digest"] == update_digest(update)
    ratio = report["growth"] / payload.info.size_bytes
    print(f"upload: {payload.info.size_bytes / MIB:.0f} MiB, receiver peak growth {ratio:.2f}x the payload")
    assert ratio <= 2.0


def _small_update() -> SiloUpdate:
    return SiloUpdate(
        silo_id="silo", weight=1.0, factors={"layer.0": {Factor.A: torch.ones(4, 4)}}, head=_head()
    )


class _ServingHandlers:
    """Serves one adapter file for any task; nothing else."""

    def __init__(self, adapter: SpooledPayload) -> None:
        self.adapter = adapter

    def adapter_for(self, silo_id: str, task_id: str) -> SpooledPayload:
        return self.adapter

    def register(self, registration: Registration) -> Enrollment:
        raise NotImplementedError

    def heartbeat(self, silo_id: str, epsilon_spent: float) -> RunState:
        raise NotImplementedError

    def wait_for_task(self, silo_id: str, wait_seconds: float) -> TaskOutcome:
        raise NotImplementedError

    def check_upload(self, announcement: UploadAnnouncement) -> None:
        raise NotImplementedError

    def accept_upload(self, announcement: UploadAnnouncement, payload: SpooledPayload) -> int:
        raise NotImplementedError

    def decline(self, silo_id: str, task_id: str, reason: str, epsilon_spent: float) -> None:
        raise NotImplementedError


@pytest.mark.timeout(PEER_TIMEOUT_SECONDS)
def test_a_256_mib_adapter_comes_down_intact_and_the_receiver_holds_at_most_two_copies(
    tmp_path: Path,
) -> None:
    state = AdapterState(layers=_tensors(seed=3), head=_head(), scaling=2.0)
    adapter = write_payload(state_to_bytes(state), tmp_path, "adapter-")
    assert adapter.info.size_bytes >= MIN_PAYLOAD_BYTES
    servicer = FederationServicer(_ServingHandlers(adapter), TransportSettings(), tmp_path / "uploads")
    server = start_server(
        ServerSettings(listen=Endpoint("127.0.0.1", 0), health=Endpoint("127.0.0.1", 0)),
        SecuritySettings(),
        [lambda s: federation_pb2_grpc.add_FederationServicer_to_server(servicer, s)],
        insecure=True,
    )
    info = adapter.info
    peer = _peer(
        "download", str(server.endpoint.port), str(tmp_path / "peer"), str(info.size_bytes), info.sha256.hex()
    )
    try:
        output, _ = peer.communicate(timeout=PEER_TIMEOUT_SECONDS)
    finally:
        peer.kill()
        server.stop(0)
    report = json.loads(output.splitlines()[-1])
    assert report["digest"] == state_digest(state)
    ratio = report["growth"] / info.size_bytes
    print(f"download: {info.size_bytes / MIB:.0f} MiB, receiver peak growth {ratio:.2f}x the payload")
    assert ratio <= 2.0
