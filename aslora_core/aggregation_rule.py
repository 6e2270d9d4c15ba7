"""The rules by which the server combines the silos' factors of a layer, and whether each is linear."""

from __future__ import annotations

from enum import StrEnum


class AggregationRule(StrEnum):
    """How the server combines the silos' factors of a layer."""

    EXACT = "exact"
    """Weighted mean of the one selected factor; the partner stays at its global value."""
    SEPARATE_MEANS = "fedit"
    """Both factors averaged separately (FedIT); mean(B) mean(A) != mean(B A)."""
    SVD = "svd"
    """Rank-r truncated SVD of the mean product sum_i p_i B_i A_i, computed from a QR core."""

    @property
    def linear(self) -> bool:
        """Whether every tensor it produces is a weighted mean of the silos' tensors, so that a robust
        coordinate-wise combiner (median, trimmed mean) can stand in for that mean.

        FedIT's separate means are linear in each factor, though the product of the means is not the mean
        of the products (the run reports that error); SVD re-factors a mean of products and is not linear.
        """
        return self is not AggregationRule.SVD
