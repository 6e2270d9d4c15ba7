"""The silo's side of one secure-aggregation round: keys, verified peers, shares held, masking, release.

The steps follow Bonawitz et al. (semi-honest, with dropouts): advertise signed keys; verify every peer's
keys and send each one sealed shares of the self-mask seed and the mask key; receive the peers' shares;
mask the encoded update against every peer that shared; answer one unmasking request, through the
share-release guard. Each refusal is logged with its reason and raised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from aslora_rpc.secure_aggregation.context import RoundContext
from aslora_rpc.secure_aggregation.errors import (
    KeySubstitutionError,
    SecureAggregationError,
    ShareReleaseRefusedError,
    TooFewSurvivorsError,
)
from aslora_rpc.secure_aggregation.keys import PublicKeys, RoundKeys, agree, private_bytes
from aslora_rpc.secure_aggregation.masks import RingVector, pairwise_mask, self_mask
from aslora_rpc.secure_aggregation.messages import ShareRelease, UnmaskRequest
from aslora_rpc.secure_aggregation.release_guard import ShareKind, ShareReleaseGuard
from aslora_rpc.secure_aggregation.shamir import SECRET_BYTES, split
from aslora_rpc.secure_aggregation.share_encryption import (
    EncryptedShares,
    SharePair,
    decrypt_shares,
    encrypt_shares,
)
from aslora_rpc.secure_aggregation.signatures import (
    KeyAdvertisement,
    PeerTrust,
    sign_keys,
    verify_advertisement,
)
from aslora_rpc.tls import TlsFiles

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class SigningCredentials:
    """A silo's certificate and its private key (PEM), which sign its round keys."""

    certificate_pem: bytes
    private_key_pem: bytes

    @classmethod
    def from_tls(cls, tls: TlsFiles) -> SigningCredentials:
        """The certificate and key of the silo's [tls] table."""
        return cls(certificate_pem=tls.cert.read_bytes(), private_key_pem=tls.key.read_bytes())


@dataclass(frozen=True)
class RoundSecrets:
    """A silo's private keys and self-mask seed of one round: kept only in the silo's own journal, so that
    an attempt of the same task after a coordinator restart masks with the very same secrets."""

    keys: RoundKeys
    seed: bytes

    @classmethod
    def generate(cls) -> RoundSecrets:
        """Fresh key pairs and seed from the OS CSPRNG."""
        return cls(keys=RoundKeys.generate(), seed=os.urandom(SECRET_BYTES))


class Participant:
    """One silo in one round; make a new one for every round (fresh keys and seed, or the secrets kept for
    the same task)."""

    def __init__(
        self,
        context: RoundContext,
        silo: str,
        credentials: SigningCredentials,
        trust: PeerTrust,
        guard: ShareReleaseGuard,
        *,
        secrets: RoundSecrets | None = None,
    ) -> None:
        """Make the round's key pairs and self-mask seed (or take `secrets` kept from an earlier attempt
        of the same task) and sign the public keys."""
        if silo not in context.silos:
            raise SecureAggregationError(f"{silo!r} is not one of this round's silos")
        self.context = context
        self.silo = silo
        self._trust = trust
        self._guard = guard
        self.secrets = secrets or RoundSecrets.generate()
        self._keys = self.secrets.keys
        self._seed = self.secrets.seed
        self.advertisement = sign_keys(
            context, silo, self._keys.public, credentials.certificate_pem, credentials.private_key_pem
        )
        self._peers: dict[str, PublicKeys] = {}
        self._held: dict[str, SharePair] = {}
        self._masked_with: frozenset[str] | None = None

    @property
    def peer_keys(self) -> dict[str, PublicKeys]:
        """The verified public keys of the round's advertisers (empty before `share_keys`)."""
        return dict(self._peers)

    @property
    def sharers(self) -> frozenset[str]:
        """The silos whose shares this silo holds (itself among them): those it masks against."""
        return frozenset(self._held)

    def share_keys(self, advertisements: Sequence[KeyAdvertisement]) -> list[EncryptedShares]:
        """Verify the round's advertised keys (this silo's own among them, unchanged) and return sealed
        shares of the seed and mask key for every other advertiser."""
        if self._peers:
            self._refuse("keys were already shared in this round")
        peers: dict[str, PublicKeys] = {}
        for advertisement in advertisements:
            if advertisement.silo in peers:
                self._refuse(f"two sets of keys for {advertisement.silo!r}")
            try:
                verify_advertisement(advertisement, self.context, self._trust)
            except SecureAggregationError as error:
                self._refuse(str(error), type(error))
            peers[advertisement.silo] = advertisement.keys
        if peers.get(self.silo) != self._keys.public:
            self._refuse("this silo's own keys are missing or were replaced", KeySubstitutionError)
        if len(peers) < self.context.threshold:
            self._refuse(
                f"{len(peers)} silos advertised keys, the threshold is {self.context.threshold}",
                TooFewSurvivorsError,
            )
        xs = [self.context.x_of(peer) for peer in peers]
        seeds = split(self._seed, self.context.threshold, xs)
        keys = split(private_bytes(self._keys.mask), self.context.threshold, xs)
        self._peers = peers
        self._held[self.silo] = SharePair(
            seeds[self.context.x_of(self.silo)], keys[self.context.x_of(self.silo)]
        )
        return [
            encrypt_shares(
                self.context,
                agree(self._keys.share, peers[peer].share),
                self.silo,
                peer,
                SharePair(seeds[self.context.x_of(peer)], keys[self.context.x_of(peer)]),
            )
            for peer in sorted(peers)
            if peer != self.silo
        ]

    def receive_shares(self, sealed: Sequence[EncryptedShares]) -> None:
        """Open the shares other silos sealed for this one; altered or misaddressed ones are refused."""
        if not self._peers or self._masked_with is not None:
            self._refuse("shares arrive after this silo shared its keys and before it masks")
        own_x = self.context.x_of(self.silo)
        for item in sealed:
            if item.recipient != self.silo or item.sender not in self._peers or item.sender in self._held:
                self._refuse(f"shares from {item.sender!r} to {item.recipient!r} are unexpected here")
            try:
                pair = decrypt_shares(
                    self.context, agree(self._keys.share, self._peers[item.sender].share), item
                )
            except SecureAggregationError as error:
                self._refuse(str(error))
            if pair.seed.x != own_x:
                self._refuse(f"the shares from {item.sender!r} are not for this silo's index")
            self._held[item.sender] = pair

    def mask(self, encoded: RingVector) -> RingVector:
        """The encoded update plus the self mask and the pairwise masks with every silo that shared."""
        sharers = frozenset(self._held)
        if self._masked_with is not None:
            self._refuse("this round's update was already masked")
        if len(sharers) < self.context.threshold:
            self._refuse(
                f"{len(sharers)} silos shared keys, the threshold is {self.context.threshold}",
                TooFewSurvivorsError,
            )
        if encoded.dtype != np.uint64 or encoded.ndim != 1:
            self._refuse(
                f"an encoded update is a vector of uint64, got {encoded.dtype} of shape {encoded.shape}"
            )
        length = encoded.shape[0]
        masked = encoded + self_mask(self.context, self._seed, self.silo, length)
        for peer in sorted(sharers - {self.silo}):
            secret = agree(self._keys.mask, self._peers[peer].mask)
            masked += pairwise_mask(self.context, secret, self.silo, peer, length)
        self._masked_with = sharers
        return masked

    def adopt_masked(self, masked_with: frozenset[str]) -> None:
        """Take the update this silo masked in an earlier attempt of the task as this round's (its secrets
        were kept): only when the same silos shared as then, since masking one update against two sets of
        peers would tell the coordinator the masks of the difference."""
        if self._masked_with is not None:
            self._refuse("this round's update was already masked")
        if masked_with != frozenset(self._held):
            self._refuse(
                f"this task's update was masked with {sorted(masked_with)}; now {sorted(self._held)} shared: "
                "it is not masked again with another set of silos"
            )
        self._masked_with = masked_with

    def release(self, request: UnmaskRequest) -> ShareRelease:
        """Shares of the survivors' seeds and the dropped silos' mask keys, once the guard has recorded
        them; refused for another task, before this silo masked, for a survivor set it cannot accept, or
        when a peer would have both kinds released for this task."""
        if request.task_id != self.context.task_id:
            self._refuse(
                f"a request for task {request.task_id}, this round is task {self.context.task_id}",
                ShareReleaseRefusedError,
            )
        if self._masked_with is None:
            self._refuse(
                "this silo has not masked its update: it releases no shares", ShareReleaseRefusedError
            )
        survivors = request.survivors
        if self.silo not in survivors:
            self._refuse(
                "the request names this silo as dropped, though it reported", ShareReleaseRefusedError
            )
        strangers = sorted(survivors - self._masked_with)
        if strangers:
            self._refuse(
                f"the request names survivors that did not share keys with this silo: {strangers}",
                ShareReleaseRefusedError,
            )
        if len(survivors) < self.context.threshold:
            self._refuse(
                f"{len(survivors)} survivors, the threshold is {self.context.threshold}", TooFewSurvivorsError
            )
        dropped = self._masked_with - survivors
        kinds = {peer: ShareKind.SELF_MASK for peer in survivors} | {
            peer: ShareKind.MASK_KEY for peer in dropped
        }
        self._guard.authorize(self.context.task_id, kinds)
        return ShareRelease(
            silo=self.silo,
            task_id=self.context.task_id,
            self_mask={peer: self._held[peer].seed for peer in sorted(survivors)},
            mask_key={peer: self._held[peer].mask_key for peer in sorted(dropped)},
        )

    def _refuse(self, reason: str, kind: type[SecureAggregationError] = SecureAggregationError) -> NoReturn:
        LOGGER.warning("secure aggregation, %s task %s: refused: %s", self.silo, self.context.task_id, reason)
        raise kind(reason)
