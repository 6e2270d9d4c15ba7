"""The coordinator's side: remove the masks from the survivors' masked updates and keep only their sum.

From each survivor u the coordinator needs t shares of u's self-mask seed; from each silo v that shared
keys but did not report, t shares of v's mask key, from which it recomputes the pairwise masks the
survivors added for v. Masks between two survivors cancel in the sum. Fewer than t survivors, or fewer
than t silos answering with shares, fail the round (TooFewSurvivorsError): the coordinator then learns
nothing, and it must not ask again for the same task id with another survivor set (the silos' guards
refuse any request that would reveal both kinds of one peer's shares).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from aslora_rpc.secure_aggregation.context import RoundContext
from aslora_rpc.secure_aggregation.errors import SecureAggregationError, TooFewSurvivorsError
from aslora_rpc.secure_aggregation.keys import PublicKeys, agree, public_bytes
from aslora_rpc.secure_aggregation.masks import RingVector, pairwise_mask, self_mask
from aslora_rpc.secure_aggregation.messages import ShareRelease
from aslora_rpc.secure_aggregation.shamir import Share, combine

_MINT = object()
"""Only `unmask` holds this: an UnmaskedSum exists only as the result of a complete unmasking."""


class UnmaskedSum:
    """The sum in Z_{2^64} of the encoded updates of at least t survivors: the only thing decoded."""

    def __init__(self, words: RingVector, survivors: frozenset[str], threshold: int, mint: object) -> None:
        """Built by `unmask` alone; a sum over fewer than `threshold` survivors cannot exist."""
        if mint is not _MINT:
            raise TypeError("an UnmaskedSum is made only by unmask()")
        if len(survivors) < threshold:
            raise TooFewSurvivorsError(f"a sum over {len(survivors)} survivors, threshold {threshold}")
        self.words = words
        self.survivors = survivors


@dataclass(frozen=True)
class RoundKeysSeen:
    """What the coordinator relayed in a round: every advertiser's public keys, and who shared keys."""

    public_keys: Mapping[str, PublicKeys]
    sharers: frozenset[str]


def unmask(
    context: RoundContext,
    seen: RoundKeysSeen,
    masked: Mapping[str, RingVector],
    releases: Sequence[ShareRelease],
) -> UnmaskedSum:
    """Sum the survivors' `masked` updates and remove every mask, using the silos' `releases`.

    TooFewSurvivorsError when fewer than t silos reported or fewer than t answered with shares;
    SecureAggregationError for releases that do not fit the round (wrong task, holder, set of silos, or
    shares that reconstruct a key other than the one advertised).
    """
    survivors = frozenset(masked)
    threshold = context.threshold
    if len(survivors) < threshold:
        raise TooFewSurvivorsError(
            f"{len(survivors)} silos reported a masked update, the threshold is {threshold}: the round fails"
        )
    if not survivors <= seen.sharers:
        raise SecureAggregationError(
            f"updates from silos that did not share keys: {sorted(survivors - seen.sharers)}"
        )
    dropped = seen.sharers - survivors
    lengths = {vector.shape[0] for vector in masked.values()}
    if len(lengths) != 1:
        raise SecureAggregationError(f"the masked updates differ in length: {sorted(lengths)}")
    length = lengths.pop()
    seeds, keys = _shares(context, releases, survivors, dropped)
    total = np.zeros(length, dtype=np.uint64)
    for silo in sorted(survivors):
        total += masked[silo]
        total -= self_mask(context, combine(seeds[silo], threshold), silo, length)
    for gone in sorted(dropped):
        key = X25519PrivateKey.from_private_bytes(combine(keys[gone], threshold))
        if public_bytes(key.public_key()) != seen.public_keys[gone].mask:
            raise SecureAggregationError(f"the shares of {gone!r}'s mask key do not give its advertised key")
        for silo in sorted(survivors):
            secret = agree(key, seen.public_keys[silo].mask)
            total -= pairwise_mask(context, secret, silo, gone, length)
    return UnmaskedSum(total, survivors, threshold, _MINT)


def _shares(
    context: RoundContext,
    releases: Sequence[ShareRelease],
    survivors: frozenset[str],
    dropped: frozenset[str],
) -> tuple[dict[str, list[Share]], dict[str, list[Share]]]:
    """The released shares per survivor (seeds) and per dropped silo (mask keys), checked per holder."""
    holders = {release.silo for release in releases}
    if len(holders) != len(releases):
        raise SecureAggregationError("two releases from one silo")
    if not holders <= survivors:
        raise SecureAggregationError(
            f"releases from silos that did not report: {sorted(holders - survivors)}"
        )
    if len(holders) < context.threshold:
        raise TooFewSurvivorsError(
            f"{len(holders)} silos released shares, the threshold is {context.threshold}: the round fails"
        )
    seeds: dict[str, list[Share]] = {silo: [] for silo in survivors}
    keys: dict[str, list[Share]] = {silo: [] for silo in dropped}
    for release in releases:
        if release.task_id != context.task_id:
            raise SecureAggregationError(f"{release.silo!r} released shares of task {release.task_id}")
        if set(release.self_mask) != survivors or set(release.mask_key) != dropped:
            raise SecureAggregationError(f"{release.silo!r} released shares of other silos than requested")
        x = context.x_of(release.silo)
        for target, share in [*release.self_mask.items(), *release.mask_key.items()]:
            if share.x != x:
                raise SecureAggregationError(f"{release.silo!r} released a share held at another index")
            (seeds if target in survivors else keys)[target].append(share)
    return seeds, keys
