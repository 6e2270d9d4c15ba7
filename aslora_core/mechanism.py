"""The kinds of privacy mechanism a ledger records (no numerical library: the operator's views name them)."""

from __future__ import annotations

from enum import StrEnum


class Mechanism(StrEnum):
    """What a ledger event released: DP-SGD steps, or a silo's noised evaluation sums."""

    DP_SGD = "dp-sgd"
    EVALUATION = "evaluation"
