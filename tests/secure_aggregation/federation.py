"""A federation of silos over the secure-aggregation library, in one process, with real certificates.

The coordinator's part is played by plain code relaying messages exactly as the protocol says; every
silo is a real `Participant` with its own certificate, pinned peers and share-release journal.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import AdapterState, FactorStatistics, LayerFactors, SiloStatistics, SiloUpdate
from aslora_rpc.certificates import (
    IssuedFiles,
    Role,
    certificate_fingerprint,
    issue_certificate,
    load_certificate,
)
from aslora_rpc.local_pki import CA_FOLDER, LocalPki, create_local_pki, tls_files
from aslora_rpc.secure_aggregation.context import RoundContext
from aslora_rpc.secure_aggregation.fixed_point import RingCodec, UpdateLayout
from aslora_rpc.secure_aggregation.masks import RingVector
from aslora_rpc.secure_aggregation.messages import ShareRelease, UnmaskRequest
from aslora_rpc.secure_aggregation.participant import Participant, SigningCredentials
from aslora_rpc.secure_aggregation.release_guard import JOURNAL_FILE, ShareReleaseGuard
from aslora_rpc.secure_aggregation.share_encryption import EncryptedShares
from aslora_rpc.secure_aggregation.signatures import PeerTrust, PinnedPeers
from aslora_rpc.secure_aggregation.unmasking import RoundKeysSeen, UnmaskedSum, unmask

SILOS = ("silo-a", "silo-b", "silo-c", "silo-d")
IMPOSTOR = "silo-z"
"""A silo certificate the CA issued but no silo pinned: what a coordinator holding the CA could mint."""
RUN_ID = "run-1"
TASK_ID = "task-7"
WIDTH = 256
RANK = 8
LAYERS = 4
LABELS = 3
WEIGHTS = {"silo-a": 120.0, "silo-b": 75.0, "silo-c": 310.0, "silo-d": 41.0}
"""Public dataset sizes N_i: the round's weights."""


@dataclass(frozen=True)
class Pki:
    """The run's certificates: the local PKI's, plus one unpinned silo certificate of the same CA."""

    local: LocalPki
    impostor: IssuedFiles

    def trust(self) -> PeerTrust:
        """What every honest silo checks keys against: the CA and the four silos pinned."""
        pinned = {
            name: certificate_fingerprint(load_certificate(files.cert.read_bytes()))
            for name, files in self.local.silos.items()
        }
        ca = load_certificate(self.local.silos[SILOS[0]].ca_cert.read_bytes())
        return PeerTrust(ca_certificate=ca, pinned=PinnedPeers(pinned))


def make_pki(folder: Path) -> Pki:
    """A CA with the coordinator, operator, four silos, and the impostor (issued, never pinned)."""
    local = create_local_pki(folder, SILOS)
    impostor = issue_certificate(folder / CA_FOLDER, folder / "impostor", Role.SILO, IMPOSTOR, days=1)
    return Pki(local=local, impostor=impostor)


def global_state() -> AdapterState:
    """A small adapter with a classifier head."""
    generator = torch.Generator().manual_seed(1)
    layers = {
        f"layer.{i}": LayerFactors(
            a=torch.randn(RANK, WIDTH, generator=generator), b=torch.randn(WIDTH, RANK, generator=generator)
        )
        for i in range(LAYERS)
    }
    head = {
        "classifier.weight": torch.randn(LABELS, WIDTH, generator=generator),
        "classifier.bias": torch.zeros(LABELS),
    }
    return AdapterState(layers=layers, head=head, scaling=2.0)


def selection(state: AdapterState) -> dict[str, FactorChoice]:
    """B for even layers, A for odd ones."""
    return {
        name: FactorChoice.B if i % 2 == 0 else FactorChoice.A for i, name in enumerate(state.layer_names)
    }


def statistics_keys(state: AdapterState) -> list[tuple[str, Factor]]:
    """Both factors of every layer carry score statistics."""
    return [(name, factor) for name in state.layer_names for factor in (Factor.A, Factor.B)]


def silo_update(silo: str, state: AdapterState, chosen: Mapping[str, FactorChoice], seed: int) -> SiloUpdate:
    """A silo's trained factors, head and statistics: random, of the adapter's shapes."""
    generator = torch.Generator().manual_seed(seed)
    factors = {
        name: {
            f: torch.randn(state.layers[name].factor(f).shape, generator=generator)
            for f in chosen[name].factors
        }
        for name in state.layer_names
    }
    head = {key: torch.randn(tensor.shape, generator=generator) for key, tensor in state.head.items()}
    values = torch.rand(len(statistics_keys(state)), 2, generator=generator).tolist()
    layers: dict[str, dict[Factor, FactorStatistics]] = {}
    for (name, factor), (grad_sq, proj_sq) in zip(statistics_keys(state), values, strict=True):
        layers.setdefault(name, {})[factor] = FactorStatistics(grad_sq=grad_sq, proj_sq=proj_sq)
    stats = SiloStatistics(layers=layers, steps=4, noise_variance=0.01)
    return SiloUpdate(silo_id=silo, weight=WEIGHTS[silo], factors=factors, head=head, statistics=stats)


def round_setup() -> tuple[AdapterState, UpdateLayout, RingCodec, dict[str, SiloUpdate]]:
    """The adapter, the round's public layout and codec, and each silo's update."""
    state = global_state()
    chosen = selection(state)
    layout = UpdateLayout.for_round(state, chosen, statistics_keys(state))
    codec = RingCodec(round_weight=sum(WEIGHTS.values()))
    updates = {silo: silo_update(silo, state, chosen, seed) for seed, silo in enumerate(SILOS)}
    return state, layout, codec, updates


@dataclass
class Round:
    """One round's participants and what the coordinator saw and relayed."""

    context: RoundContext
    participants: dict[str, Participant]
    sealed: dict[str, list[EncryptedShares]] = field(default_factory=dict)
    masked: dict[str, RingVector] = field(default_factory=dict)

    def keys_seen(self) -> RoundKeysSeen:
        """Every advertiser's public keys, and the silos whose shares were relayed."""
        return RoundKeysSeen(
            public_keys={name: p.advertisement.keys for name, p in self.participants.items()},
            sharers=frozenset(self.sealed),
        )


def start_round(pki: Pki, state_dir: Path, task_id: str = TASK_ID) -> Round:
    """Every silo makes and signs its keys; each keeps its journal in its own state folder."""
    context = RoundContext.with_majority(RUN_ID, task_id, SILOS)
    trust = pki.trust()
    participants = {
        silo: Participant(
            context,
            silo,
            SigningCredentials.from_tls(tls_files(pki.local.silos[silo])),
            trust,
            ShareReleaseGuard(state_dir / silo / JOURNAL_FILE),
        )
        for silo in SILOS
    }
    return Round(context=context, participants=participants)


def share_and_relay(round_: Round, *, dropped_before_sharing: Collection[str] = ()) -> None:
    """Silos verify the advertisements and seal shares; the coordinator relays each to its recipient."""
    advertisements = [p.advertisement for p in round_.participants.values()]
    for silo, participant in round_.participants.items():
        if silo not in dropped_before_sharing:
            round_.sealed[silo] = participant.share_keys(advertisements)
    for silo in round_.sealed:
        inbox = [item for items in round_.sealed.values() for item in items if item.recipient == silo]
        round_.participants[silo].receive_shares(inbox)


def upload(
    round_: Round,
    layout: UpdateLayout,
    codec: RingCodec,
    updates: Mapping[str, SiloUpdate],
    *,
    dropped: Collection[str] = (),
) -> None:
    """Every silo that shared and did not drop masks its encoded update and uploads it."""
    for silo in round_.sealed:
        if silo not in dropped:
            round_.masked[silo] = round_.participants[silo].mask(codec.encode(updates[silo], layout))


def collect(round_: Round) -> UnmaskedSum:
    """Ask every survivor for shares and unmask the sum."""
    request = UnmaskRequest(task_id=round_.context.task_id, survivors=frozenset(round_.masked))
    releases: list[ShareRelease] = [
        round_.participants[silo].release(request) for silo in sorted(round_.masked)
    ]
    return unmask(round_.context, round_.keys_seen(), round_.masked, releases)
