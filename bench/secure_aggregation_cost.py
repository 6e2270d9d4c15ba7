"""What secure aggregation costs per round: bytes per silo against the plain upload, and coordinator CPU.

Ten silos run the whole protocol in this process through `aslora_rpc.secure_aggregation` (real X25519
keys signed by certificates of a throwaway CA, Shamir shares, sealed shares, ChaCha20 masks) on updates
shaped like a RoBERTa-base adapter (`bench.aggregation_cost.SHAPES[0]`: 24 matrices 768 wide at rank 8,
one factor per layer) with a 2-class mean-pooled head and the trained factors' score statistics. The plain
upload is the real wire payload (`update_to_bytes`, float32 safetensors). Protocol messages are counted
by their fields' bytes (no gRPC framing yet: a few bytes per field). Coordinator CPU is process time of
the unmasking and decoding (median of `--repeats`), with no silo, one or three silos dropped after
sharing; the plain exact mean of the same updates is timed beside it.

    python -m bench.secure_aggregation_cost --out bench/results/secure_aggregation_cost.json
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from aslora_core.aggregation import aggregate
from aslora_core.aggregation_rule import AggregationRule
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import AdapterState, FactorStatistics, SiloStatistics, SiloUpdate
from aslora_core.serialization import update_to_bytes
from aslora_rpc.certificates import CA_CERT_FILE, certificate_fingerprint, load_certificate
from aslora_rpc.local_pki import create_local_pki, tls_files
from aslora_rpc.secure_aggregation.context import RoundContext
from aslora_rpc.secure_aggregation.decoding import decode_mean
from aslora_rpc.secure_aggregation.fixed_point import RingCodec, UpdateLayout
from aslora_rpc.secure_aggregation.masks import WORD_BYTES, RingVector
from aslora_rpc.secure_aggregation.messages import ShareRelease, UnmaskRequest
from aslora_rpc.secure_aggregation.participant import Participant, SigningCredentials
from aslora_rpc.secure_aggregation.release_guard import JOURNAL_FILE, ShareReleaseGuard
from aslora_rpc.secure_aggregation.shamir import ELEMENT_BYTES
from aslora_rpc.secure_aggregation.share_encryption import EncryptedShares
from aslora_rpc.secure_aggregation.signatures import KeyAdvertisement, PeerTrust, PinnedPeers
from aslora_rpc.secure_aggregation.unmasking import RoundKeysSeen, unmask
from bench.aggregation_cost import SHAPES, _state

SILOS = 10
DROPPED = (0, 1, 3)
DEFAULT_REPEATS = 3
LABELS = 2
SEED = 0
DATASET_SIZE = 6_735
"""Records per silo: SST-2's 67,349 training sentences split over ten silos."""
ROUND_SECONDS = 60.0
CPU_TARGET_FRACTION = 0.10
BYTES_TARGET_RATIO = 2.2
X_BYTES = 4
"""A share's x-coordinate as the release would carry it."""
RUN_ID = "bench"


def _adapter() -> AdapterState:
    """RoBERTa-base's adapter shape with a bias-free 2-class head on the 768-wide pooled embedding."""
    generator = torch.Generator().manual_seed(SEED)
    state = _state(SHAPES[0], generator)
    width = SHAPES[0].width
    return AdapterState(
        layers=state.layers,
        head={"classifier.weight": torch.randn(LABELS, width, generator=generator)},
        scaling=state.scaling,
    )


def _update(
    silo: str, state: AdapterState, selection: dict[str, FactorChoice], generator: torch.Generator
) -> SiloUpdate:
    factors = {
        name: {
            f: 0.05 * torch.randn(state.layers[name].factor(f).shape, generator=generator)
            for f in selection[name].factors
        }
        for name in state.layer_names
    }
    head = {key: torch.randn(tensor.shape, generator=generator) for key, tensor in state.head.items()}
    released = {
        name: {f: FactorStatistics(grad_sq=1e-3, proj_sq=1e-4) for f in selection[name].factors}
        for name in state.layer_names
    }
    return SiloUpdate(
        silo_id=silo,
        weight=float(DATASET_SIZE),
        factors=factors,
        head=head,
        statistics=SiloStatistics(layers=released, steps=8, noise_variance=1e-6),
    )


def _advertisement_bytes(advertisement: KeyAdvertisement) -> int:
    keys = advertisement.keys
    return (
        len(advertisement.silo)
        + len(keys.mask)
        + len(keys.share)
        + len(advertisement.certificate_pem)
        + len(advertisement.signature)
    )


def _sealed_bytes(sealed: EncryptedShares) -> int:
    return len(sealed.sender) + len(sealed.recipient) + len(sealed.nonce) + len(sealed.ciphertext)


def _release_bytes(release: ShareRelease) -> int:
    entries = [*release.self_mask, *release.mask_key]
    return (
        len(release.silo)
        + len(release.task_id)
        + sum(len(name) + X_BYTES + ELEMENT_BYTES for name in entries)
    )


def _median_cpu(run: Callable[[], object], repeats: int) -> float:
    """Median process (CPU) seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return statistics.median(times)


@dataclass
class Round:
    """One round's public facts and every message of it, as the coordinator would relay them."""

    context: RoundContext
    participants: dict[str, Participant]
    sealed: dict[str, list[EncryptedShares]]
    masked: dict[str, RingVector]
    releases: list[ShareRelease]
    silo_seconds: float
    """Mean CPU seconds of one silo's protocol work (keys, signature, shares, masking, release)."""

    @property
    def seen(self) -> RoundKeysSeen:
        """The keys the coordinator relayed; every silo shared."""
        return RoundKeysSeen(
            public_keys={n: p.advertisement.keys for n, p in self.participants.items()},
            sharers=frozenset(self.sealed),
        )


def _run_round(
    context: RoundContext,
    credentials: dict[str, SigningCredentials],
    trust: PeerTrust,
    journals: Path,
    encoded: dict[str, RingVector],
    *,
    dropped: int,
) -> Round:
    """Every silo shares keys; the first `dropped` silos drop before uploading; survivors release shares."""
    names = list(context.silos)
    started = time.process_time()
    participants = {
        n: Participant(context, n, credentials[n], trust, ShareReleaseGuard(journals / n / JOURNAL_FILE))
        for n in names
    }
    advertisements = [p.advertisement for p in participants.values()]
    sealed = {n: p.share_keys(advertisements) for n, p in participants.items()}
    for n, p in participants.items():
        p.receive_shares([item for items in sealed.values() for item in items if item.recipient == n])
    survivors = names[dropped:]
    masked = {n: participants[n].mask(encoded[n]) for n in survivors}
    request = UnmaskRequest(task_id=context.task_id, survivors=frozenset(survivors))
    releases = [participants[n].release(request) for n in survivors]
    seconds = (time.process_time() - started) / len(names)
    return Round(context, participants, sealed, masked, releases, seconds)


def _bytes_of(round_: Round, silo: str, vector_bytes: int) -> dict[str, int]:
    """What `silo` sends and receives beyond the plain round, by message."""
    sealed_in = [item for items in round_.sealed.values() for item in items if item.recipient == silo]
    advertisement = _advertisement_bytes(round_.participants[silo].advertisement)
    release = _release_bytes(next(r for r in round_.releases if r.silo == silo))
    sent = sum(_sealed_bytes(item) for item in round_.sealed[silo])
    received = sum(_sealed_bytes(item) for item in sealed_in)
    request = len(round_.context.task_id) + sum(len(n) for n in round_.masked)
    return {
        "masked_vector_bytes": vector_bytes,
        "advertisement_bytes": advertisement,
        "sealed_shares_sent_bytes": sent,
        "sealed_shares_received_bytes": received,
        "release_bytes": release,
        "upload_bytes": vector_bytes + advertisement + sent + release,
        "extra_download_bytes": advertisement * len(round_.participants) + received + request,
    }


def _unmask_and_decode(
    round_: Round, layout: UpdateLayout, codec: RingCodec, weights: dict[str, float]
) -> None:
    """The coordinator's whole secure-aggregation work at the end of a round."""
    unmasked = unmask(round_.context, round_.seen, round_.masked, round_.releases)
    decode_mean(unmasked, layout, codec, weights)


@dataclass(frozen=True)
class Setup:
    """The round's public layout and codec, the silos' updates and their encodings."""

    state: AdapterState
    selection: dict[str, FactorChoice]
    updates: dict[str, SiloUpdate]
    layout: UpdateLayout
    codec: RingCodec

    @classmethod
    def make(cls, names: Sequence[str]) -> Setup:
        """Updates of `names` on the RoBERTa-base adapter, one factor per layer."""
        state = _adapter()
        selection = {
            name: FactorChoice.A if i % 2 else FactorChoice.B for i, name in enumerate(state.layer_names)
        }
        generator = torch.Generator().manual_seed(SEED)
        updates = {name: _update(name, state, selection, generator) for name in names}
        keys = [(n, f) for n in state.layer_names for f in selection[n].factors]
        layout = UpdateLayout.for_round(state, selection, keys)
        codec = RingCodec(round_weight=math.fsum(u.weight for u in updates.values()))
        return cls(state, selection, updates, layout, codec)


def measure(repeats: int, dropped_counts: Sequence[int]) -> tuple[dict[str, object], list[dict[str, float]]]:
    """A round of SILOS silos per count of dropped silos: the setup's summary and one row per round."""
    names = [f"silo-{i:02d}" for i in range(SILOS)]
    setup = Setup.make(names)
    encoded = {n: setup.codec.encode(setup.updates[n], setup.layout) for n in names}
    plain_bytes = len(update_to_bytes(setup.updates[names[0]]))
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        pki = create_local_pki(Path(folder) / "pki", names)
        ca = load_certificate((pki.ca_dir / CA_CERT_FILE).read_bytes())
        fingerprints = {
            n: certificate_fingerprint(load_certificate(f.cert.read_bytes())) for n, f in pki.silos.items()
        }
        trust = PeerTrust(ca_certificate=ca, pinned=PinnedPeers(fingerprints))
        credentials = {n: SigningCredentials.from_tls(tls_files(pki.silos[n])) for n in names}
        for dropped in dropped_counts:
            context = RoundContext.with_majority(RUN_ID, f"task-{dropped}", names)
            round_ = _run_round(context, credentials, trust, Path(folder), encoded, dropped=dropped)
            weights = {n: setup.updates[n].weight for n in round_.masked}
            unmask_seconds = _median_cpu(
                functools.partial(_unmask_and_decode, round_, setup.layout, setup.codec, weights), repeats
            )
            survivors = [setup.updates[n] for n in round_.masked]
            plain_seconds = _median_cpu(
                functools.partial(aggregate, setup.state, survivors, setup.selection, AggregationRule.EXACT),
                repeats,
            )
            sizes = _bytes_of(round_, sorted(round_.masked)[0], setup.layout.length * WORD_BYTES)
            extra = sizes["upload_bytes"] + sizes["extra_download_bytes"]
            rows.append(
                {
                    "silos_dropped": dropped,
                    "threshold": context.threshold,
                    **sizes,
                    "upload_ratio": sizes["upload_bytes"] / plain_bytes,
                    "upload_and_extra_download_ratio": extra / plain_bytes,
                    "coordinator_unmask_cpu_seconds": unmask_seconds,
                    "coordinator_plain_mean_cpu_seconds": plain_seconds,
                    "unmask_share_of_round": unmask_seconds / ROUND_SECONDS,
                    "silo_protocol_cpu_seconds": round_.silo_seconds,
                }
            )
    summary: dict[str, object] = {
        "shape": SHAPES[0].name + f", {LABELS}-class head, trained factors' statistics",
        "silos": SILOS,
        "values": setup.layout.length,
        "fraction_bits": setup.codec.fraction_bits,
        "plain_upload_bytes": plain_bytes,
        "targets": {
            "bytes_ratio": BYTES_TARGET_RATIO,
            "cpu_share_of_round": CPU_TARGET_FRACTION,
            "round_seconds": ROUND_SECONDS,
        },
    }
    return summary, rows


def main() -> None:
    """Measure, print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--dropped", type=int, nargs="+", default=list(DROPPED))
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    summary, rows = measure(arguments.repeats, arguments.dropped)
    print(f"{summary['shape']}: {summary['values']} values, plain upload {summary['plain_upload_bytes']} B")
    print(
        f"{'dropped':>7} {'upload B':>10} {'x plain':>8} {'+down x':>8} {'unmask s':>9} {'plain s':>8} "
        f"{'% of 60 s':>9} {'silo s':>7}"
    )
    for row in rows:
        print(
            f"{row['silos_dropped']:>7} {row['upload_bytes']:>10} {row['upload_ratio']:>8.3f} "
            f"{row['upload_and_extra_download_ratio']:>8.3f} {row['coordinator_unmask_cpu_seconds']:>9.3f} "
            f"{row['coordinator_plain_mean_cpu_seconds']:>8.4f} {100 * row['unmask_share_of_round']:>9.2f} "
            f"{row['silo_protocol_cpu_seconds']:>7.3f}"
        )
    if arguments.out is not None:
        machine = {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
        document = {"machine": machine, "repeats": arguments.repeats, **summary, "rows": rows}
        arguments.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
