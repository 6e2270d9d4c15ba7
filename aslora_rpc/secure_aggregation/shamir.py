"""Shamir secret sharing over the prime field GF(2^521 - 1), which holds any 256-bit secret."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aslora_rpc.secure_aggregation.errors import SecureAggregationError

PRIME = 2**521 - 1
"""A Mersenne prime larger than 2^256: every 32-byte secret is a field element."""
SECRET_BYTES = 32
ELEMENT_BYTES = (PRIME.bit_length() + 7) // 8
"""Bytes of one field element, big-endian (66)."""


@dataclass(frozen=True)
class Share:
    """One point (x, y) of a sharing polynomial; x is the holder's 1-based index."""

    x: int
    y: int

    def __post_init__(self) -> None:
        if not 0 < self.x < PRIME or not 0 <= self.y < PRIME:
            raise SecureAggregationError("a share's coordinates must be field elements (x nonzero)")


def split(secret: bytes, threshold: int, xs: Iterable[int]) -> dict[int, Share]:
    """Shares of a 32-byte `secret` at each x in `xs`: any `threshold` of them recover it, fewer reveal
    nothing. The polynomial's other coefficients come from the OS CSPRNG."""
    if len(secret) != SECRET_BYTES:
        raise SecureAggregationError(f"a secret is {SECRET_BYTES} bytes, got {len(secret)}")
    points = sorted(set(xs))
    if not 1 <= threshold <= len(points):
        raise SecureAggregationError(f"threshold {threshold} with {len(points)} holders")
    coefficients = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return {x: Share(x, _evaluate(coefficients, x)) for x in points}


def combine(shares: Sequence[Share], threshold: int) -> bytes:
    """The 32-byte secret from at least `threshold` shares of distinct holders; every share past the first
    `threshold` must lie on the same polynomial, so an inconsistent set is an error, not a wrong secret."""
    by_x = {share.x: share for share in shares}
    if len(by_x) != len(shares):
        raise SecureAggregationError("two shares from the same holder")
    if len(shares) < threshold:
        raise SecureAggregationError(f"{len(shares)} shares, {threshold} needed")
    basis, extra = list(shares[:threshold]), shares[threshold:]
    for share in extra:
        if _interpolate(basis, share.x) != share.y:
            raise SecureAggregationError(f"the share of holder {share.x} is inconsistent with the others")
    secret = _interpolate(basis, 0)
    if secret >= 1 << (8 * SECRET_BYTES):
        raise SecureAggregationError("the shares do not encode a 32-byte secret")
    return secret.to_bytes(SECRET_BYTES, "big")


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    """The polynomial with `coefficients` (constant first) at x, by Horner's rule mod PRIME."""
    value = 0
    for coefficient in reversed(coefficients):
        value = (value * x + coefficient) % PRIME
    return value


def _interpolate(shares: Sequence[Share], at: int) -> int:
    """The value at `at` of the polynomial through `shares` (Lagrange, mod PRIME)."""
    total = 0
    for i, share in enumerate(shares):
        numerator = denominator = 1
        for j, other in enumerate(shares):
            if i != j:
                numerator = numerator * (at - other.x) % PRIME
                denominator = denominator * (share.x - other.x) % PRIME
        total = (total + share.y * numerator * pow(denominator, -1, PRIME)) % PRIME
    return total
