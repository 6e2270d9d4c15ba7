"""The refusals of the secure-aggregation protocol, one class per reason a caller may act on."""

from __future__ import annotations


class SecureAggregationError(ValueError):
    """A secure-aggregation step that cannot proceed; the message says why."""


class KeySubstitutionError(SecureAggregationError):
    """A peer's public keys whose signature, certificate or pinned fingerprint does not check out."""


class ShareReleaseRefusedError(SecureAggregationError):
    """A request for shares that an honest silo must not answer (it would reveal a peer's update)."""


class TooFewSurvivorsError(SecureAggregationError):
    """Fewer silos than the threshold t are left at a step that needs t: the round fails."""


class RingOverflowError(SecureAggregationError):
    """A value so large that the round's sum could wrap around the ring: it is refused before encoding."""
