"""The far end of the chunked-transfer test, run as its own process so its memory can be measured.

`python -m tests.grpc.transfer_peer receive-upload WORKDIR` serves the silo-facing service and prints
its port, then, once an update arrived, the update's digest and the process's peak memory growth.
`python -m tests.grpc.transfer_peer download PORT WORKDIR SIZE SHA256HEX` downloads an adapter the same
way a silo does and prints the same two figures.
"""

from __future__ import annotations

import hashlib
import json
import resource
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

import torch

from aslora.v1 import federation_pb2_grpc
from aslora_coordinator.config import SecuritySettings, ServerSettings, TransportSettings
from aslora_coordinator.federation_servicer import FederationServicer
from aslora_coordinator.server import start_server
from aslora_core.factors import AdapterState, SiloUpdate, StatisticsNoise
from aslora_core.payload_files import state_from_file, update_from_file
from aslora_rpc.channels import open_channel
from aslora_rpc.endpoints import Endpoint
from aslora_rpc.messages import (
    Enrollment,
    EvaluationReply,
    Registration,
    RunDecline,
    RunPlan,
    RunState,
    TaskOutcome,
    UploadAnnouncement,
)
from aslora_rpc.secure_aggregation.messages import ShareRelease, UnmaskRequest
from aslora_rpc.secure_aggregation.share_encryption import EncryptedShares
from aslora_rpc.secure_aggregation.signatures import KeyAdvertisement
from aslora_rpc.transfer import PayloadInfo, SpooledPayload
from aslora_silo.client import CoordinatorClient
from aslora_silo.retry import Backoff

PAGE_BYTES = resource.getpagesize()
KIB = 1024
CLEAR_PEAK_RSS = "5"
NOTHING_PUBLISHED = StatisticsNoise(steps=0, noise_variance=0.0)
"""This peer published no run settings; the measured updates carry no statistics."""
"""Writing this to /proc/self/clear_refs resets the peak RSS (Linux 4.0 and later)."""
WAIT_SECONDS = 300.0
LOOPBACK = "127.0.0.1"
STOP_GRACE_SECONDS = 10.0


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE_BYTES


def reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark of this process to its current RSS; return that RSS in bytes.

    (getrusage's ru_maxrss is no use here: a child started by fork and exec inherits its parent's peak.)
    """
    Path("/proc/self/clear_refs").write_text(CLEAR_PEAK_RSS)
    return current_rss()


def peak_rss() -> int:
    """Largest resident set size since the last reset, in bytes (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * KIB
    raise RuntimeError("no VmHWM in /proc/self/status")


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def update_digest(update: SiloUpdate) -> str:
    """Digest of an update's factors and head."""
    flat = {f"{layer}/{which.value}": t for layer, per in update.factors.items() for which, t in per.items()}
    flat.update({f"head/{name}": t for name, t in update.head.items()})
    return tensors_digest(flat)


def state_digest(state: AdapterState) -> str:
    """Digest of an adapter state's factors and head."""
    flat = {
        f"{layer}/{key}": t
        for layer, pair in state.layers.items()
        for key, t in (("A", pair.a), ("B", pair.b))
    }
    flat.update({f"head/{name}": t for name, t in state.head.items()})
    return tensors_digest(flat)


def _unreached() -> AssertionError:
    return AssertionError("a transfer measurement calls only the upload or the download handlers")


class TransferOnlyHandlers:
    """The silo-facing handlers a transfer measurement never reaches: a call to one fails the measurement."""

    def get_run(self, after_run_id: str, wait_seconds: float) -> RunPlan | None:
        raise _unreached()

    def decline_run(self, decline: RunDecline) -> None:
        raise _unreached()

    def register(self, registration: Registration) -> Enrollment:
        raise _unreached()

    def heartbeat(self, silo_id: str, run_id: str, epsilon_spent: float) -> RunState:
        raise _unreached()

    def wait_for_task(self, silo_id: str, run_id: str, wait_seconds: float) -> TaskOutcome:
        raise _unreached()

    def check_upload(self, announcement: UploadAnnouncement) -> None:
        raise _unreached()

    def accept_upload(self, announcement: UploadAnnouncement, payload: SpooledPayload) -> int:
        raise _unreached()

    def adapter_for(self, silo_id: str, task_id: str) -> SpooledPayload:
        raise _unreached()

    def decline(self, silo_id: str, task_id: str, reason: str, epsilon_spent: float) -> None:
        raise _unreached()

    def release_evaluation(self, reply: EvaluationReply) -> None:
        raise _unreached()

    def exchange_keys(
        self, silo_id: str, task_id: str, advertisement: KeyAdvertisement, wait_seconds: float
    ) -> tuple[KeyAdvertisement, ...] | None:
        raise _unreached()

    def exchange_shares(
        self, silo_id: str, task_id: str, sealed: tuple[EncryptedShares, ...], wait_seconds: float
    ) -> tuple[EncryptedShares, ...] | None:
        raise _unreached()

    def unmask_request(self, silo_id: str, task_id: str, wait_seconds: float) -> UnmaskRequest | None:
        raise _unreached()

    def release_shares(self, release: ShareRelease) -> None:
        raise _unreached()


class ReceivingHandlers(TransferOnlyHandlers):
    """Accepts any upload; measures memory from the header of the largest one to its decoded tensors."""

    def __init__(self, expected_bytes: int) -> None:
        self.expected_bytes = expected_bytes
        self.done = threading.Event()
        self.baseline = 0
        self.report: dict[str, object] = {}

    def check_upload(self, announcement: UploadAnnouncement) -> None:
        if announcement.update.size_bytes == self.expected_bytes:
            self.baseline = reset_peak_rss()

    def accept_upload(self, announcement: UploadAnnouncement, payload: SpooledPayload) -> int:
        update = update_from_file(payload.path, NOTHING_PUBLISHED)
        if payload.info.size_bytes == self.expected_bytes:
            self.report = {"digest": update_digest(update), "growth": peak_rss() - self.baseline}
            self.done.set()
        return 0


def receive_upload(work: Path, expected_bytes: int) -> None:
    """Serve until the update of `expected_bytes` arrived; print the port first, then the report."""
    handlers = ReceivingHandlers(expected_bytes)
    transport = TransportSettings()
    settings = ServerSettings(listen=Endpoint(LOOPBACK, 0), health=Endpoint(LOOPBACK, 0))
    servicer = FederationServicer(handlers, transport, work / "uploads")
    server = start_server(
        settings,
        SecuritySettings(),
        [lambda s: federation_pb2_grpc.add_FederationServicer_to_server(servicer, s)],
        insecure=True,
    )
    print(json.dumps({"port": server.endpoint.port}), flush=True)
    received = handlers.done.wait(WAIT_SECONDS)
    print(json.dumps(handlers.report if received else {"error": "no upload"}), flush=True)
    server.stop(STOP_GRACE_SECONDS)  # the upload's response is still on its way


def download(port: int, work: Path, info: PayloadInfo) -> None:
    """Download task "big" as a silo does, decode it, print the digest and the memory growth."""
    channel = open_channel(Endpoint(LOOPBACK, port), None, insecure=True)
    client = CoordinatorClient(channel, Backoff(0.1, 1.0, WAIT_SECONDS))
    baseline = reset_peak_rss()
    spooled = client.download_adapter("silo", "big", info, work)
    state = state_from_file(spooled.path)
    print(json.dumps({"digest": state_digest(state), "growth": peak_rss() - baseline}), flush=True)
    channel.close()


def main(arguments: list[str]) -> None:
    """Dispatch on the mode."""
    torch.set_num_threads(1)
    if arguments[0] == "receive-upload":
        receive_upload(Path(arguments[1]), int(arguments[2]))
    else:
        download(
            int(arguments[1]), Path(arguments[2]), PayloadInfo(int(arguments[3]), bytes.fromhex(arguments[4]))
        )


if __name__ == "__main__":
    main(sys.argv[1:])
