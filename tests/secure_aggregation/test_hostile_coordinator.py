"""A test-double coordinator that speaks the real secure-aggregation calls over mutual TLS, to an honest
silo's own round code (`silo/secure_round.py` over a real `CoordinatorClient`): it substitutes a peer's
keys, or, after a "restart", asks for the other kind of a peer's shares. The silo refuses and logs why.

The double plays three honest peers with the protocol library's participants; the fourth silo is the one
under test, with its own state folder, journal and share-release guard.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import grpc
import pytest

from aslora.v1 import federation_pb2 as pb
from aslora.v1 import federation_pb2_grpc, transfer_pb2
from aslora_coordinator.config import SecuritySettings, ServerSettings
from aslora_coordinator.server import start_server
from aslora_rpc.certificates import Role, issue_certificate
from aslora_rpc.channels import open_channel
from aslora_rpc.endpoints import Endpoint
from aslora_rpc.local_pki import tls_files
from aslora_rpc.messages import SecureAggregationPlan, Task
from aslora_rpc.secure_aggregation import release_guard
from aslora_rpc.secure_aggregation.context import RoundContext
from aslora_rpc.secure_aggregation.errors import KeySubstitutionError, ShareReleaseRefusedError
from aslora_rpc.secure_aggregation.keys import RoundKeys
from aslora_rpc.secure_aggregation.messages import ShareRelease
from aslora_rpc.secure_aggregation.participant import Participant, SigningCredentials
from aslora_rpc.secure_aggregation.release_guard import ShareKind, ShareReleaseGuard
from aslora_rpc.secure_aggregation.share_encryption import EncryptedShares
from aslora_rpc.secure_aggregation.signatures import KeyAdvertisement, sign_keys
from aslora_rpc.secure_aggregation_wire import (
    advertisement_from_proto,
    advertisement_to_proto,
    release_from_proto,
    sealed_from_proto,
    sealed_to_proto,
)
from aslora_rpc.transfer import PayloadInfo
from aslora_silo.client import CoordinatorClient
from aslora_silo.retry import Backoff
from aslora_silo.secure_round import SecureTask, peer_trust
from tests.secure_aggregation.federation import (
    RUN_ID,
    SILOS,
    TASK_ID,
    WEIGHTS,
    Pki,
    global_state,
    make_pki,
    selection,
    silo_update,
    statistics_keys,
)

HONEST = "silo-a"
VICTIM = "silo-c"
WAIT_SECONDS = 1.0
DEADLINE_SECONDS = 20.0


@dataclass
class Peers:
    """The three peers the double plays: honest participants, each with its own guard."""

    participants: dict[str, Participant]
    sealed: dict[str, list[EncryptedShares]] = field(default_factory=dict)


class DoubleCoordinator(federation_pb2_grpc.FederationServicer):
    """Relays keys and shares like a coordinator, but may replace the victim's keys, and names the
    survivors the test sets (`survivors`) when the silo asks for the unmasking request."""

    def __init__(self, peers: Peers, forged: KeyAdvertisement | None) -> None:
        self.peers = peers
        self.forged = forged
        self.survivors: list[str] = list(SILOS)
        self.releases: list[ShareRelease] = []
        self._lock = threading.Lock()

    def ExchangeKeys(
        self, request: pb.ExchangeKeysRequest, context: grpc.ServicerContext
    ) -> pb.ExchangeKeysResponse:
        honest = advertisement_from_proto(request.keys)
        keys = [honest] + [p.advertisement for p in self.peers.participants.values()]
        if self.forged is not None:
            keys = [self.forged if item.silo == VICTIM else item for item in keys]
        with self._lock:
            for silo, participant in self.peers.participants.items():
                if silo not in self.peers.sealed:
                    self.peers.sealed[silo] = participant.share_keys([honest, *self._peer_keys()])
        return pb.ExchangeKeysResponse(ready=True, keys=[advertisement_to_proto(item) for item in keys])

    def ExchangeShares(
        self, request: pb.ExchangeSharesRequest, context: grpc.ServicerContext
    ) -> pb.ExchangeSharesResponse:
        from_honest = [sealed_from_proto(item) for item in request.shares]
        everything = from_honest + [item for items in self.peers.sealed.values() for item in items]
        for silo, participant in self.peers.participants.items():
            participant.receive_shares([item for item in everything if item.recipient == silo])
        inbox = [item for item in everything if item.recipient == HONEST]
        return pb.ExchangeSharesResponse(ready=True, shares=[sealed_to_proto(item) for item in inbox])

    def GetUnmaskRequest(
        self, request: pb.GetUnmaskRequestRequest, context: grpc.ServicerContext
    ) -> pb.GetUnmaskRequestResponse:
        return pb.GetUnmaskRequestResponse(ready=True, survivors=self.survivors)

    def ReleaseShares(
        self, request: pb.ReleaseSharesRequest, context: grpc.ServicerContext
    ) -> pb.ReleaseSharesResponse:
        self.releases.append(release_from_proto(request))
        return pb.ReleaseSharesResponse()

    # The calls a secure round's steps never make: the double does not serve them.

    def GetRun(self, request: pb.GetRunRequest, context: grpc.ServicerContext) -> pb.GetRunResponse:
        return _unserved(context)

    def DeclineRun(
        self, request: pb.DeclineRunRequest, context: grpc.ServicerContext
    ) -> pb.DeclineRunResponse:
        return _unserved(context)

    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.RegisterResponse:
        return _unserved(context)

    def Heartbeat(self, request: pb.HeartbeatRequest, context: grpc.ServicerContext) -> pb.HeartbeatResponse:
        return _unserved(context)

    def WaitForTask(
        self, request: pb.WaitForTaskRequest, context: grpc.ServicerContext
    ) -> pb.WaitForTaskResponse:
        return _unserved(context)

    def DownloadAdapter(
        self, request: pb.DownloadAdapterRequest, context: grpc.ServicerContext
    ) -> Iterator[transfer_pb2.Chunk]:
        return _unserved(context)

    def UploadUpdate(
        self, request_iterator: Iterator[pb.UploadUpdateRequest], context: grpc.ServicerContext
    ) -> pb.UploadUpdateResponse:
        return _unserved(context)

    def DeclineTask(
        self, request: pb.DeclineTaskRequest, context: grpc.ServicerContext
    ) -> pb.DeclineTaskResponse:
        return _unserved(context)

    def ReleaseEvaluation(
        self, request: pb.ReleaseEvaluationRequest, context: grpc.ServicerContext
    ) -> pb.ReleaseEvaluationResponse:
        return _unserved(context)

    def _peer_keys(self) -> list[KeyAdvertisement]:
        return [p.advertisement for p in self.peers.participants.values()]


def _unserved(context: grpc.ServicerContext) -> NoReturn:
    context.abort(grpc.StatusCode.UNIMPLEMENTED, "the double serves only a secure round's steps")
    raise AssertionError("abort raises")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates made once for the module."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def _context() -> RoundContext:
    return RoundContext.with_majority(RUN_ID, TASK_ID, SILOS)


def _peers(pki: Pki, state: Path, kept: Peers | None = None) -> Peers:
    """The three peers (again with the same secrets, after a restart, when `kept` is given)."""
    trust = pki.trust()
    return Peers(
        {
            silo: Participant(
                _context(),
                silo,
                SigningCredentials.from_tls(tls_files(pki.local.silos[silo])),
                trust,
                ShareReleaseGuard(state / silo / release_guard.JOURNAL_FILE),
                secrets=None if kept is None else kept.participants[silo].secrets,
            )
            for silo in SILOS
            if silo != HONEST
        }
    )


@dataclass
class Served:
    """The double on a loopback port, and a client of the honest silo connected to it over mutual TLS."""

    double: DoubleCoordinator
    client: CoordinatorClient


def _serve(pki: Pki, double: DoubleCoordinator) -> Iterator[Served]:
    settings = ServerSettings(
        listen=Endpoint("127.0.0.1", 0),
        health=Endpoint("127.0.0.1", 0),
        tls=tls_files(pki.local.coordinator),
    )
    running = start_server(
        settings,
        SecuritySettings(),
        [lambda server: federation_pb2_grpc.add_FederationServicer_to_server(double, server)],
        insecure=False,
    )
    channel = open_channel(running.endpoint, tls_files(pki.local.silos[HONEST]), insecure=False)
    try:
        yield Served(double, CoordinatorClient(channel, Backoff(0.1, 0.5, 10.0)))
    finally:
        channel.close()
        running.stop(0.0)


def _task() -> Task:
    state = global_state()
    return Task(
        task_id=TASK_ID,
        round_index=0,
        selection=selection(state),
        noise_multiplier=1.0,
        sample_rate=0.1,
        local_steps=2,
        adapter=PayloadInfo(size_bytes=1, sha256=bytes(32)),
        seconds_to_deadline=DEADLINE_SECONDS,
        secure_aggregation=SecureAggregationPlan(
            silos=SILOS,
            threshold=_context().threshold,
            fraction_bits=24,
            round_weight=sum(WEIGHTS.values()),
            weight=WEIGHTS[HONEST],
            statistics=tuple(statistics_keys(state)),
        ),
    )


def _honest_silo(pki: Pki, served: Served, state: Path) -> SecureTask:
    files = tls_files(pki.local.silos[HONEST])
    return SecureTask(
        served.client,
        run_id=RUN_ID,
        silo_id=HONEST,
        task=_task(),
        tls=files,
        trust=peer_trust(files, HONEST, pki.trust().pinned),
        state_dir=state / HONEST,
        wait_seconds=WAIT_SECONDS,
    )


def test_a_key_under_a_certificate_minted_for_the_victim_is_refused(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's CA mints a second certificate named like the victim; the double relays keys it
    signed as the victim's. The honest silo refuses before it sends any share, and its log says why."""
    minted = issue_certificate(pki.local.ca_dir, tmp_path / "minted", Role.SILO, VICTIM, days=1)
    forged = sign_keys(
        _context(), VICTIM, RoundKeys.generate().public, minted.cert.read_bytes(), minted.key.read_bytes()
    )
    for served in _serve(pki, DoubleCoordinator(_peers(pki, tmp_path), forged)):
        silo = _honest_silo(pki, served, tmp_path)
        with (
            caplog.at_level(logging.WARNING),
            pytest.raises(KeySubstitutionError, match="not the one pinned"),
        ):
            silo.exchange()
    assert any("refused" in r.getMessage() and "not the one pinned" in r.getMessage() for r in caplog.records)


def test_after_a_restart_the_other_kind_of_a_peers_shares_is_refused(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The silo releases its share of every survivor's self mask; the double "restarts", hands out the same
    task, and now names the victim as dropped. The silo advertises the same keys and sends the same masked
    update again (its journal), then refuses the victim's mask-key share, logging why."""
    state = global_state()
    update = silo_update(HONEST, state, selection(state), seed=0)
    peers = _peers(pki, tmp_path)
    for served in _serve(pki, DoubleCoordinator(peers, forged=None)):
        silo = _honest_silo(pki, served, tmp_path)
        silo.exchange()
        first = silo.masked_upload(update, state, selection(state)).path.read_bytes()
        silo.answer_unmasking()
        (release,) = served.double.releases
        assert set(release.self_mask) == set(SILOS) and not release.mask_key
    for served in _serve(pki, DoubleCoordinator(_peers(pki, tmp_path, kept=peers), forged=None)):
        served.double.survivors = [s for s in SILOS if s != VICTIM]
        again = _honest_silo(pki, served, tmp_path)
        again.exchange()
        kept = again.kept_upload()
        assert kept is not None and kept.path.read_bytes() == first
        with caplog.at_level(logging.WARNING), pytest.raises(ShareReleaseRefusedError, match=VICTIM):
            again.answer_unmasking()
        assert served.double.releases == []
    assert any("would reveal both" in r.getMessage() and VICTIM in r.getMessage() for r in caplog.records)
    released = json.loads((tmp_path / HONEST / release_guard.JOURNAL_FILE).read_text())["tasks"][TASK_ID]
    assert released == dict.fromkeys(SILOS, ShareKind.SELF_MASK.value)
