"""The two LoRA factors and what a layer trains in a round: plain enums, no torch (the wire and the
operator's commands use them)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Factor(StrEnum):
    """One LoRA factor: `A` (r x n, random init) or `B` (m x r, zero init)."""

    A = "A"
    B = "B"


class FactorChoice(StrEnum):
    """What one layer trains in one round: one factor, or both (FedIT and SVD baselines)."""

    A = "A"
    B = "B"
    BOTH = "AB"

    @property
    def factors(self) -> tuple[Factor, ...]:
        """The factors this choice trains."""
        return _TRAINED[self]

    @classmethod
    def of(cls, factor: Factor) -> FactorChoice:
        """The choice that trains exactly `factor`."""
        return cls(factor.value)


_TRAINED = {
    FactorChoice.A: (Factor.A,),
    FactorChoice.B: (Factor.B,),
    FactorChoice.BOTH: (Factor.A, Factor.B),
}
"""What each choice trains, looked up rather than rebuilt: aggregation asks this per silo and layer."""

Selection = Mapping[str, FactorChoice]
"""Layer name -> what that layer trains this round."""
