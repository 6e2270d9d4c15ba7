"""The coordinator's part of one secure-aggregation round: it relays keys and sealed shares, collects masked
updates and released shares, and nothing it holds is any silo's update in the clear.

Its steps close in order, each when every silo still expected has answered or its step time has passed:
keys (the advertisers are U1), shares (the sharers are U2), masked uploads (the survivors U3, closed with
the round) and unmasking (the releases). Fields change only under the run's lock; nothing here
is written to the coordinator's state files (a restarted coordinator redoes the round's task).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from aslora_coordinator.errors import FederationError
from aslora_core.config import ClippingMode
from aslora_core.factor_choice import Factor, Selection
from aslora_core.training.statistics import MIN_STEPS_FOR_STATISTICS
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.messages import SecureAggregationPlan
from aslora_rpc.secure_aggregation.context import RoundContext
from aslora_rpc.secure_aggregation.fixed_point import RingCodec, UpdateLayout
from aslora_rpc.secure_aggregation.masks import RingVector
from aslora_rpc.secure_aggregation.messages import ShareRelease, UnmaskRequest
from aslora_rpc.secure_aggregation.share_encryption import EncryptedShares
from aslora_rpc.secure_aggregation.signatures import KeyAdvertisement
from aslora_rpc.secure_aggregation.unmasking import RoundKeysSeen

STEP_SHARE_OF_DEADLINE = 0.25
"""The key step, the share step and the unmasking step each wait at most this share of the round's
deadline for silos that have not answered (they are fast: no training happens in them)."""


def statistics_keys(
    selection: Selection, clipping: ClippingMode, local_steps: int
) -> tuple[tuple[str, Factor], ...]:
    """The (layer, factor) pairs whose statistics a silo releases in a round: every factor whose gradient
    is noised (both under joint clipping, the selected ones otherwise), none with fewer than two steps."""
    if local_steps < MIN_STEPS_FOR_STATISTICS:
        return ()
    return tuple(
        (layer, factor)
        for layer in sorted(selection)
        for factor in Factor
        if clipping is ClippingMode.JOINT or factor in selection[layer].factors
    )


@dataclass
class SecureRound:
    """The relayed messages and the sets U1 (advertised), U2 (shared) and U3 (uploaded) of one round."""

    context: RoundContext
    layout: UpdateLayout
    codec: RingCodec
    weights: Mapping[str, float]
    """The public weight N_i (1 under uniform weighting) of each silo of the round."""
    step_seconds: float
    opened_at: float
    advertisements: dict[str, KeyAdvertisement] = field(default_factory=dict)
    advertisers: tuple[KeyAdvertisement, ...] | None = None
    """U1's keys, fixed when the key step closes."""
    keys_closed_at: float = 0.0
    sealed: dict[str, tuple[EncryptedShares, ...]] = field(default_factory=dict)
    sharers: frozenset[str] | None = None
    """U2, fixed when the share step closes."""
    masked: dict[str, RingVector] = field(default_factory=dict)
    digests: dict[str, bytes] = field(default_factory=dict)
    """SHA-256 of each masked upload, so that a re-send of the same bytes is acknowledged."""
    request: UnmaskRequest | None = None
    """The survivors U3 the silos are asked about, fixed when uploads close."""
    unmask_opened_at: float = 0.0
    releases: dict[str, ShareRelease] = field(default_factory=dict)

    def plan_for(self, silo: str) -> SecureAggregationPlan:
        """What a silo's task carries."""
        return SecureAggregationPlan(
            silos=self.context.silos,
            threshold=self.context.threshold,
            fraction_bits=self.codec.fraction_bits,
            round_weight=self.codec.round_weight,
            weight=self.weights[silo],
            statistics=self.layout.statistics,
        )

    # ---- keys ----------------------------------------------------------------------------------------

    def offer_keys(self, advertisement: KeyAdvertisement) -> None:
        """Keep a silo's signed keys (checked by the silos, not here); the same keys again are a re-send."""
        silo = advertisement.silo
        if self.advertisers is not None and silo not in self.advertisements:
            raise FederationError(ErrorCode.ROUND_CLOSED, "the key step of this round has closed")
        known = self.advertisements.get(silo)
        if known is not None and known != advertisement:
            raise FederationError(ErrorCode.DUPLICATE_UPDATE, f"{silo} advertised other keys before")
        self.advertisements[silo] = advertisement

    def close_keys(self, expected: Collection[str], now: float) -> bool:
        """Fix U1 once every expected silo advertised or the step's time has passed; whether it is fixed."""
        if self.advertisers is None and (
            set(expected) <= set(self.advertisements) or now >= self.opened_at + self.step_seconds
        ):
            self.advertisers = tuple(self.advertisements[s] for s in sorted(self.advertisements))
            self.keys_closed_at = now
        return self.advertisers is not None

    # ---- shares --------------------------------------------------------------------------------------

    def offer_shares(self, silo: str, sealed: tuple[EncryptedShares, ...]) -> None:
        """Keep the shares a silo of U1 sealed for its peers; the same shares again are a re-send."""
        if self.advertisers is None or silo not in self.advertisements:
            raise FederationError(ErrorCode.NOT_ASSIGNED, f"{silo} is not among the round's advertisers")
        if self.sharers is not None and silo not in self.sealed:
            raise FederationError(ErrorCode.ROUND_CLOSED, "the share step of this round has closed")
        if any(item.sender != silo or item.recipient not in self.advertisements for item in sealed):
            raise FederationError(ErrorCode.MALFORMED_MESSAGE, f"shares not from {silo} to an advertiser")
        known = self.sealed.get(silo)
        if known is not None and known != sealed:
            raise FederationError(ErrorCode.DUPLICATE_UPDATE, f"{silo} sent other shares before")
        self.sealed[silo] = sealed

    def close_shares(self, expected: Collection[str], now: float) -> bool:
        """Fix U2 once every expected advertiser shared or the step's time has passed."""
        if self.sharers is not None or self.advertisers is None:
            return self.sharers is not None
        if set(expected) & set(self.advertisements) <= set(self.sealed) or (
            now >= self.keys_closed_at + self.step_seconds
        ):
            self.sharers = frozenset(self.sealed)
        return self.sharers is not None

    def inbox(self, silo: str) -> tuple[EncryptedShares, ...]:
        """The shares sealed for `silo` by the other sharers."""
        sharers = self.sharers or frozenset()
        return tuple(
            item for sender in sorted(sharers) for item in self.sealed[sender] if item.recipient == silo
        )

    # ---- uploads and unmasking -----------------------------------------------------------------------

    def gone(self) -> set[str]:
        """Silos that can no longer upload: they advertised no keys, or shared none, in time."""
        out: set[str] = set()
        if self.advertisers is not None:
            out |= set(self.context.silos) - set(self.advertisements)
        if self.sharers is not None:
            out |= set(self.context.silos) - self.sharers
        return out

    def resent(self, silo: str, sha256: bytes) -> bool:
        """Whether an upload announced with `sha256` is the masked update already kept for `silo`;
        DUPLICATE_UPDATE for another one."""
        known = self.digests.get(silo)
        if known is None:
            return False
        if known != sha256:
            raise FederationError(ErrorCode.DUPLICATE_UPDATE, f"{silo} sent another masked update before")
        return True

    def accept_masked(self, silo: str, vector: RingVector, sha256: bytes) -> None:
        """Keep a sharer's masked update."""
        if self.sharers is None or silo not in self.sharers:
            raise FederationError(
                ErrorCode.NOT_ASSIGNED, f"{silo} shared no keys in this round: it uploads no update"
            )
        if self.resent(silo, sha256):
            return
        self.masked[silo] = vector
        self.digests[silo] = sha256

    def open_unmasking(self, now: float) -> UnmaskRequest:
        """Fix U3, the silos whose masked update arrived, and ask the survivors for shares."""
        if self.request is None:
            self.request = UnmaskRequest(task_id=self.context.task_id, survivors=frozenset(self.masked))
            self.unmask_opened_at = now
        return self.request

    def accept_release(self, release: ShareRelease) -> None:
        """Keep a survivor's released shares (the unmasking checks them against the round)."""
        if self.request is None or release.silo not in self.request.survivors:
            raise FederationError(ErrorCode.NOT_ASSIGNED, f"{release.silo} is not asked for shares")
        self.releases[release.silo] = release

    def unmasking_done(self, now: float) -> bool:
        """Every survivor answered, or the step's time has passed (at once when nobody was asked)."""
        if self.request is None:
            return True
        return set(self.request.survivors) <= set(self.releases) or (
            now >= self.unmask_opened_at + self.step_seconds
        )

    def keys_seen(self) -> RoundKeysSeen:
        """The public keys the coordinator relayed and who shared: what unmasking checks against."""
        return RoundKeysSeen(
            public_keys={silo: item.keys for silo, item in self.advertisements.items()},
            sharers=self.sharers or frozenset(),
        )
