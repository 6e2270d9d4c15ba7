"""Send a large adapter up or down through a real gRPC server on loopback and measure the receiving
process's peak memory growth: shared by the chunked-transfer test (256 MiB) and `bench.transfer_memory`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from aslora.v1 import federation_pb2_grpc
from aslora_coordinator.config import SecuritySettings, ServerSettings, TransportSettings
from aslora_coordinator.federation_servicer import FederationServicer
from aslora_coordinator.server import start_server
from aslora_core.factor_choice import Factor
from aslora_core.factors import AdapterState, LayerFactors, SiloUpdate
from aslora_core.serialization import state_to_bytes, update_to_bytes
from aslora_rpc.channels import open_channel
from aslora_rpc.endpoints import Endpoint
from aslora_rpc.messages import UploadAnnouncement
from aslora_rpc.transfer import SpooledPayload, write_payload
from aslora_silo.client import CoordinatorClient
from aslora_silo.retry import Backoff
from tests.grpc.transfer_peer import TransferOnlyHandlers, state_digest, update_digest

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20
ROWS, COLUMNS = 2048, 4096
"""Each factor is a 32 MiB float32 matrix, so a layer (A and B) is 64 MiB."""
LAYER_BYTES = 2 * ROWS * COLUMNS * 4
PEER_TIMEOUT_SECONDS = 600
PEER_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@dataclass(frozen=True)
class TransferMeasurement:
    """One transfer: payload size, the receiver's peak memory growth, and whether the tensors arrived."""

    size_bytes: int
    growth_bytes: int
    intact: bool

    @property
    def copies(self) -> float:
        """Peak memory growth of the receiver in payload sizes."""
        return self.growth_bytes / self.size_bytes


def _tensors(layers: int, seed: int) -> dict[str, LayerFactors]:
    generator = torch.Generator().manual_seed(seed)
    return {
        f"layer.{i}": LayerFactors(
            a=torch.randn(ROWS, COLUMNS, generator=generator),
            b=torch.randn(COLUMNS, ROWS, generator=generator),
        )
        for i in range(layers)
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


def _small_update() -> SiloUpdate:
    return SiloUpdate(
        silo_id="silo", weight=1.0, factors={"layer.0": {Factor.A: torch.ones(4, 4)}}, head=_head()
    )


def measure_upload(work: Path, layers: int) -> TransferMeasurement:
    """A silo uploads an update of `layers` x 64 MiB to a coordinator peer process, after a small warm-up."""
    update = _update(_tensors(layers, seed=1))
    payload = write_payload(update_to_bytes(update), work, "update-")
    warm_up = write_payload(update_to_bytes(_small_update()), work, "warm-up-")
    peer = _peer("receive-upload", str(work / "peer"), str(payload.info.size_bytes))
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
    return TransferMeasurement(
        payload.info.size_bytes, int(report["growth"]), report["digest"] == update_digest(update)
    )


class _ServingHandlers(TransferOnlyHandlers):
    """Serves one adapter file for any task; nothing else."""

    def __init__(self, adapter: SpooledPayload) -> None:
        self.adapter = adapter

    def adapter_for(self, silo_id: str, task_id: str) -> SpooledPayload:
        return self.adapter


def measure_download(work: Path, layers: int) -> TransferMeasurement:
    """A silo peer process downloads a global adapter of `layers` x 64 MiB from a coordinator server."""
    state = AdapterState(layers=_tensors(layers, seed=3), head=_head(), scaling=2.0)
    adapter = write_payload(state_to_bytes(state), work, "adapter-")
    servicer = FederationServicer(_ServingHandlers(adapter), TransportSettings(), work / "uploads")
    server = start_server(
        ServerSettings(listen=Endpoint("127.0.0.1", 0), health=Endpoint("127.0.0.1", 0)),
        SecuritySettings(),
        [lambda s: federation_pb2_grpc.add_FederationServicer_to_server(servicer, s)],
        insecure=True,
    )
    info = adapter.info
    peer = _peer(
        "download", str(server.endpoint.port), str(work / "peer"), str(info.size_bytes), info.sha256.hex()
    )
    try:
        output, _ = peer.communicate(timeout=PEER_TIMEOUT_SECONDS)
    finally:
        peer.kill()
        server.stop(0)
    report = json.loads(output.splitlines()[-1])
    return TransferMeasurement(
        info.size_bytes, int(report["growth"]), report["digest"] == state_digest(state)
    )
