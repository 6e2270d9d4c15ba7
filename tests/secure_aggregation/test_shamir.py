"""Shamir sharing over GF(2^521 - 1): any t shares recover a 32-byte secret, an inconsistent set is caught."""

from __future__ import annotations

import itertools
import os

import pytest

from aslora_rpc.secure_aggregation.errors import SecureAggregationError
from aslora_rpc.secure_aggregation.shamir import PRIME, Share, combine, split

HOLDERS = range(1, 6)
THRESHOLD = 3


def test_every_threshold_subset_recovers_the_secret() -> None:
    """Each of the ten 3-of-5 subsets, in any order, gives back the secret; so do all five shares."""
    secret = os.urandom(32)
    shares = split(secret, THRESHOLD, HOLDERS)
    for subset in itertools.combinations(shares.values(), THRESHOLD):
        assert combine(list(reversed(subset)), THRESHOLD) == secret
    assert combine(list(shares.values()), THRESHOLD) == secret


def test_fewer_than_threshold_or_inconsistent_shares_are_refused() -> None:
    """Two shares of a 3-threshold secret are not enough; a tampered fourth share is detected."""
    shares = list(split(os.urandom(32), THRESHOLD, HOLDERS).values())
    with pytest.raises(SecureAggregationError, match="3 needed"):
        combine(shares[:2], THRESHOLD)
    tampered = [*shares[:3], Share(shares[3].x, (shares[3].y + 1) % PRIME)]
    with pytest.raises(SecureAggregationError, match="inconsistent"):
        combine(tampered, THRESHOLD)
    with pytest.raises(SecureAggregationError, match="same holder"):
        combine([shares[0], shares[0], shares[1]], THRESHOLD)
