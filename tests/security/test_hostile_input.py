"""Over 1,000 malformed updates from authenticated silos during a live round: all refused, nothing changed.

Two runs with the same seed and deterministic noise: in both, silo-a trains for real and a hostile but
authenticated silo-h takes a task and finally declines it (the coordinator is paused until both have
registered, so that both take part in the one round). In the attacked run silo-h first sends every
malformed upload of `malformed_updates`, and, once silo-a's genuine update is in, replays well-formed
updates under silo-a's own certificate. The final adapter and the coordinator's books must be those of
the quiet run, bit for bit.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import torch

from aslora.v1 import federation_pb2 as pb
from aslora.v1 import federation_pb2_grpc
from aslora_coordinator.ledger import LedgerEntry
from aslora_coordinator.service import CoordinatorService
from aslora_core.factors import AdapterState
from aslora_core.fingerprint import base_model_fingerprint
from aslora_core.serialization import state_from_bytes, update_to_bytes
from aslora_rpc import wire
from aslora_rpc.channels import open_channel
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.errors import error_code_of
from aslora_rpc.local_pki import LocalPki, create_local_pki, tls_files, tls_table
from aslora_rpc.messages import RunEnd, RunState, Task
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
from tests.security.malformed_updates import (
    CASES_PER_CATEGORY,
    MalformedUploads,
    upload_messages,
    well_formed_update,
)

GOOD_SILO = "silo-a"
HOSTILE_SILO = "silo-h"
HOSTILE_DATASET_SIZE = 8
TRAIN_RECORDS = 24
MAX_PAYLOAD_BYTES = 1 << 20
CALL_TIMEOUT = 20.0
RUN_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 0.05
FUZZ_SEED = 7
MIN_MALFORMED = 1000


@dataclass(frozen=True)
class Books:
    """What the coordinator keeps about a finished run, without wall-clock times or the random run id."""

    state: RunState
    rounds_completed: int
    silos: list[tuple[str, int, float, float, int, float, str | None]]
    ledger: list[LedgerEntry]
    adapter: AdapterState


def _stub(
    service: CoordinatorService, pki: LocalPki, silo: str
) -> tuple[grpc.Channel, federation_pb2_grpc.FederationStub]:
    channel = open_channel(service.server.endpoint, tls_files(pki.silos[silo]), insecure=False)
    return channel, federation_pb2_grpc.FederationStub(channel)


def _refusal(stub: federation_pb2_grpc.FederationStub, messages: list[pb.UploadUpdateRequest]) -> str:
    """The coordinator's error code for an upload that must be refused ('ACCEPTED' if it was not)."""
    try:
        stub.UploadUpdate(iter(messages), timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        return error_code_of(error) or f"no error code ({error})"
    return "ACCEPTED"


def _task(stub: federation_pb2_grpc.FederationStub) -> Task:
    while True:
        response = stub.WaitForTask(
            pb.WaitForTaskRequest(silo_id=HOSTILE_SILO, run_id=served_run_id(stub), wait_seconds=5),
            timeout=CALL_TIMEOUT,
        )
        outcome = wire.task_outcome_from_proto(response)
        if isinstance(outcome, Task):
            return outcome
        assert not isinstance(outcome, RunEnd), f"the run ended before the hostile silo got a task: {outcome}"


def _wait_received(service: CoordinatorService, silo: str) -> None:
    give_up = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < give_up:
        current = service.orchestrator.current_round
        if current is not None and silo in current.received:
            return
        time.sleep(POLL_SECONDS)
    pytest.fail(f"{silo}'s update never arrived")


def _wait_registered(service: CoordinatorService, silos: list[str]) -> None:
    give_up = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < give_up:
        if [r.silo_id for r in service.orchestrator.silo_records()] == silos:
            return
        time.sleep(POLL_SECONDS)
    pytest.fail(f"{silos} did not all register")


def _attack(
    service: CoordinatorService, pki: LocalPki, stub: federation_pb2_grpc.FederationStub, task: Task
) -> collections.Counter[tuple[str, str]]:
    """Send every malformed upload; return (category, outcome) counts, outcome 'refused' when as expected."""
    download = pb.DownloadAdapterRequest(silo_id=HOSTILE_SILO, task_id=task.task_id)
    adapter = b"".join(c.data for c in stub.DownloadAdapter(download, timeout=CALL_TIMEOUT))
    state = state_from_bytes(adapter)
    base = well_formed_update(HOSTILE_SILO, float(HOSTILE_DATASET_SIZE), state, task.selection)
    tally: collections.Counter[tuple[str, str]] = collections.Counter()
    for case in MalformedUploads(base, task.task_id, MAX_PAYLOAD_BYTES, FUZZ_SEED):
        code = _refusal(stub, case.messages)
        tally[case.category, "refused" if code in case.expected else code] += 1
    # Replays: once silo-a's real update is in, well-formed updates under silo-a's own certificate.
    _wait_received(service, GOOD_SILO)
    channel, good_stub = _stub(service, pki, GOOD_SILO)
    with channel:
        replay = update_to_bytes(well_formed_update(GOOD_SILO, float(TRAIN_RECORDS), state, task.selection))
        for _ in range(CASES_PER_CATEGORY):
            code = _refusal(good_stub, upload_messages(GOOD_SILO, task.task_id, replay))
            tally["duplicate", "refused" if code == ErrorCode.DUPLICATE_UPDATE else code] += 1
    return tally


def _run(tmp_path: Path, model: Path, *, attack: bool) -> tuple[Books, collections.Counter[tuple[str, str]]]:
    """One single-round run of silo-a and silo-h; silo-h attacks first when `attack`."""
    pki = create_local_pki(tmp_path / "pki", [GOOD_SILO, HOSTILE_SILO])
    tables = coordinator_tables(model, rounds=1, min_silos=1, round_deadline_seconds=RUN_TIMEOUT_SECONDS)
    tables["tls"] = tls_table(pki.coordinator)
    tables["transport"] = {"max_payload_bytes": MAX_PAYLOAD_BYTES}
    service = CoordinatorService(load_config(tmp_path / "c.toml", tables), tmp_path / "work", insecure=False)
    service.orchestrator.pause()
    tally: collections.Counter[tuple[str, str]] = collections.Counter()
    try:
        channel, stub = _stub(service, pki, HOSTILE_SILO)
        with channel:
            request = pb.RegisterRequest(
                protocol_version=PROTOCOL_VERSION,
                silo_name=HOSTILE_SILO,
                base_model_fingerprint=base_model_fingerprint(model),
                dataset_size=HOSTILE_DATASET_SIZE,
                run_id=served_run_id(stub),
            )
            stub.Register(request, timeout=CALL_TIMEOUT)
            silo_toml = tmp_path / "silo-a.toml"
            silo_toml.write_text(
                f'model_path = "{model}"\n[silo]\nname = "{GOOD_SILO}"\n'
                f'[coordinator]\naddress = "{service.server.endpoint}"\n'
                f'[data]\ntrain_path = "{write_tsv(tmp_path / "train.tsv", TRAIN_RECORDS)}"\n'
                + silo_privacy_toml()
                + '[health]\nlisten = "127.0.0.1:0"\n[connection]\nwait_seconds = 1\n[tls]\n'
                + "".join(f'{k} = "{v}"\n' for k, v in tls_table(pki.silos[GOOD_SILO]).items())
            )
            agent = SiloAgent(load_silo_config(silo_toml), tmp_path / "silo-a-state", insecure=False)
            ended: list[RunEnd | None] = []
            thread = threading.Thread(target=lambda: ended.append(agent.run(max_runs=1)), daemon=True)
            thread.start()
            _wait_registered(service, [GOOD_SILO, HOSTILE_SILO])
            service.orchestrator.resume()
            task = _task(stub)
            if attack:
                tally = _attack(service, pki, stub, task)
            decline = pb.DeclineTaskRequest(silo_id=HOSTILE_SILO, task_id=task.task_id, reason="leaving")
            stub.DeclineTask(decline, timeout=CALL_TIMEOUT)
            thread.join(RUN_TIMEOUT_SECONDS)
        assert ended and ended[0] is not None and ended[0].state is RunState.FINISHED, "silo-a unfinished"
        orchestrator = service.orchestrator
        observed = orchestrator.observe()
        books = Books(
            state=observed.state,
            rounds_completed=observed.rounds_completed,
            silos=[
                (
                    s.record.silo_id,
                    s.record.dataset_size,
                    s.record.sample_rate,
                    s.record.noise_multiplier,
                    s.record.rounds_participated,
                    s.record.epsilon_reported,
                    s.record.declined_reason,
                )
                for s in observed.silos
            ],
            ledger=list(observed.ledger),
            adapter=orchestrator.global_state,
        )
    finally:
        service.shutdown()
    return books, tally


def test_malformed_updates_are_all_refused_and_change_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    quiet, _ = _run(tmp_path / "quiet", tiny_model_dir, attack=False)
    attacked, tally = _run(tmp_path / "attacked", tiny_model_dir, attack=True)

    wrong = {key: count for key, count in tally.items() if key[1] != "refused"}
    assert wrong == {}, f"uploads not refused as expected: {wrong}"
    assert sum(tally.values()) >= MIN_MALFORMED
    assert attacked.state is RunState.FINISHED and attacked.rounds_completed == 1
    assert attacked.silos == quiet.silos
    assert attacked.ledger == quiet.ledger
    assert attacked.adapter.layer_names == quiet.adapter.layer_names
    for name in quiet.adapter.layer_names:
        got, want = attacked.adapter.layers[name], quiet.adapter.layers[name]
        assert torch.equal(got.a, want.a), name
        assert torch.equal(got.b, want.b), name
    for key, tensor in quiet.adapter.head.items():
        assert torch.equal(attacked.adapter.head[key], tensor), key
