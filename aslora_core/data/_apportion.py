"""Turn fractional shares into whole counts that add up exactly (largest-remainder rounding)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def apportion(shares: npt.ArrayLike, total: int) -> npt.NDArray[np.int64]:
    """Split `total` into whole counts proportional to `shares` (non-negative, positive sum)."""
    weights = np.asarray(shares, dtype=np.float64)
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError("shares must be a non-empty 1-D array")
    if total < 0:
        raise ValueError(f"total must be non-negative, got {total}")
    weight_sum = float(weights.sum())
    if np.any(weights < 0) or not np.isfinite(weight_sum) or weight_sum <= 0:
        raise ValueError("shares must be finite, non-negative and have a positive sum")
    exact = weights / weight_sum * total
    counts = np.floor(exact).astype(np.int64)
    shortfall = total - int(counts.sum())
    # Stable sort: equal remainders go to the lower index, so the result is deterministic.
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:shortfall]] += 1
    return counts
