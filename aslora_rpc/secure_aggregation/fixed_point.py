"""Fixed-point encoding of a weighted silo update in the ring Z_{2^64}, with a checked overflow bound.

A value x of a silo with public weight w is encoded as round(w * x * 2^f) in two's complement, f the
fraction bits. The sum over the round's silos stays below 2^63 in magnitude, and so decodes without
wrapping, when every |x| <= 2^62 / (W * 2^f), W the total weight of the round's silos (any subset of
survivors weighs less); a larger value is refused before anything is encoded. Each encoding rounds by at
most 1/2, so the decoded weighted mean of K survivors of total weight W' is off by at most
K / (2 W' 2^f) per coordinate, plus float64 rounding of w * x (none for float32 tensors and integer
weights below 2^29, whose product is exact).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import AdapterState, SiloUpdate
from aslora_rpc.secure_aggregation.errors import RingOverflowError, SecureAggregationError
from aslora_rpc.secure_aggregation.masks import RingVector

DEFAULT_FRACTION_BITS = 24
"""Resolution 2^-24 (about 6e-8) per unit of weight: below float32's precision for values near 1."""
MAX_FRACTION_BITS = 48
SUM_MAGNITUDE_BITS = 62
"""The encoded magnitudes of a round sum to at most 2^62: half the signed range of the 64-bit ring, the
other half covers the rounding of each encoding."""
STATISTICS_PER_FACTOR = 2
"""grad_sq and proj_sq (`aslora_core.factors.FactorStatistics`)."""
Shape = tuple[int, ...]


@dataclass(frozen=True)
class UpdateLayout:
    """Which values a round's encoded update holds, in order: the selected factors of each layer, the head,
    then (grad_sq, proj_sq) of each (layer, factor) whose statistics the round pools. It is public: the
    coordinator builds it from the global adapter and the selection, as every silo does."""

    factors: tuple[tuple[str, Factor, Shape], ...]
    head: tuple[tuple[str, Shape], ...]
    statistics: tuple[tuple[str, Factor], ...]
    dtype: torch.dtype

    @classmethod
    def for_round(
        cls,
        global_state: AdapterState,
        selection: Mapping[str, FactorChoice],
        statistics: Sequence[tuple[str, Factor]] = (),
    ) -> UpdateLayout:
        """The layout of a round with `selection` on `global_state`, pooling `statistics`."""
        if set(selection) != set(global_state.layers):
            raise SecureAggregationError("the selection must name exactly the adapter's layers")
        factors = tuple(
            (name, factor, tuple(global_state.layers[name].factor(factor).shape))
            for name in global_state.layer_names
            for factor in selection[name].factors
        )
        head = tuple((key, tuple(global_state.head[key].shape)) for key in sorted(global_state.head))
        dtypes = {global_state.layers[name].factor(f).dtype for name, f, _ in factors}
        dtypes |= {global_state.head[key].dtype for key, _ in head}
        if len(dtypes) != 1:
            raise SecureAggregationError(f"the adapter mixes dtypes {sorted(map(str, dtypes))}")
        return cls(factors=factors, head=head, statistics=tuple(sorted(statistics)), dtype=dtypes.pop())

    @property
    def length(self) -> int:
        """Ring elements in an encoded update."""
        tensors = sum(math.prod(shape) for _, _, shape in self.factors) + sum(
            math.prod(shape) for _, shape in self.head
        )
        return tensors + STATISTICS_PER_FACTOR * len(self.statistics)


@dataclass(frozen=True)
class RingCodec:
    """Encodes weighted updates of one round into Z_{2^64}: `round_weight` is the sum of the public weights
    of every silo the round was handed to, which the overflow bound is computed from."""

    round_weight: float
    fraction_bits: int = DEFAULT_FRACTION_BITS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.round_weight) and self.round_weight > 0):
            raise SecureAggregationError(
                f"the round's total weight must be positive, got {self.round_weight}"
            )
        if not 0 <= self.fraction_bits <= MAX_FRACTION_BITS:
            raise SecureAggregationError(f"fraction_bits must be in [0, {MAX_FRACTION_BITS}]")

    @property
    def scale(self) -> float:
        """2^f: one unit of weight times one unit of value is this many ring units."""
        return float(2**self.fraction_bits)

    @property
    def value_bound(self) -> float:
        """The largest |value| a silo may encode: the round's sum then cannot wrap the ring."""
        return 2.0**SUM_MAGNITUDE_BITS / (self.round_weight * self.scale)

    def error_bound(self, survivors: int, total_weight: float) -> float:
        """The most a decoded weighted mean over `survivors` silos of `total_weight` is off by, per
        coordinate, from the rounding of each silo's encoding."""
        return survivors / (2.0 * total_weight * self.scale)

    def encode(self, update: SiloUpdate, layout: UpdateLayout) -> RingVector:
        """round(weight * value * 2^f) of every value of `update`, in `layout`'s order, as ring elements;
        RingOverflowError for a value past `value_bound`, SecureAggregationError for an update that does
        not match the layout."""
        weight = update.weight
        if not (math.isfinite(weight) and 0 < weight <= self.round_weight):
            raise SecureAggregationError(
                f"weight {weight} must be positive and at most the round's total {self.round_weight}"
            )
        values = self._values(update, layout)
        worst = int(np.argmax(np.abs(values))) if values.size else 0
        if values.size and not math.isfinite(values[worst]):
            raise SecureAggregationError("the update holds a value that is not finite")
        if values.size and abs(values[worst]) > self.value_bound:
            raise RingOverflowError(
                f"|value| {abs(values[worst]):.6g} exceeds {self.value_bound:.6g}, the bound at which the "
                f"sum of the round's weighted updates (total weight {self.round_weight:g}, scale "
                f"2^{self.fraction_bits}) could wrap the 2^64 ring: lower fraction_bits or check the update"
            )
        scaled = np.rint(values * (weight * self.scale))
        return scaled.astype(np.int64).view(np.uint64)

    def decode(self, words: RingVector, total_weight: float) -> npt.NDArray[np.float64]:
        """A summed vector's signed values divided by 2^f and by the summed weight: the weighted mean."""
        return words.view(np.int64).astype(np.float64) / (self.scale * total_weight)

    @staticmethod
    def _values(update: SiloUpdate, layout: UpdateLayout) -> npt.NDArray[np.float64]:
        """The update's values in layout order, in float64; refuses a missing or mis-shaped part."""
        parts: list[npt.NDArray[np.float64]] = []
        for name, factor, shape in layout.factors:
            tensor = update.factors.get(name, {}).get(factor)
            parts.append(_flat(tensor, shape, f"layer {name!r} factor {factor.value}"))
        if {name for name, _, _ in layout.factors} != set(update.factors) or sum(
            len(f) for f in update.factors.values()
        ) != len(layout.factors):
            raise SecureAggregationError("the update carries factors the round's layout does not hold")
        if set(update.head) != {key for key, _ in layout.head}:
            raise SecureAggregationError(f"the update's head {sorted(update.head)} differs from the layout's")
        for key, shape in layout.head:
            parts.append(_flat(update.head[key], shape, f"head {key!r}"))
        if layout.statistics:
            parts.append(_statistics(update, layout.statistics))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


def _flat(tensor: torch.Tensor | None, shape: Shape, what: str) -> npt.NDArray[np.float64]:
    if tensor is None:
        raise SecureAggregationError(f"the update lacks {what}")
    if tuple(tensor.shape) != shape:
        raise SecureAggregationError(f"{what}: shape {tuple(tensor.shape)}, the layout says {shape}")
    return tensor.detach().to("cpu", torch.float64).reshape(-1).numpy()


def _statistics(update: SiloUpdate, keys: Sequence[tuple[str, Factor]]) -> npt.NDArray[np.float64]:
    released = update.statistics
    if released is None:
        raise SecureAggregationError("the round pools score statistics and the update has none")
    values = []
    for layer, factor in keys:
        entry = released.layers.get(layer, {}).get(factor)
        if entry is None:
            raise SecureAggregationError(
                f"the update lacks the statistics of layer {layer!r} factor {factor.value}"
            )
        values += [entry.grad_sq, entry.proj_sq]
    if sum(len(f) for f in released.layers.values()) != len(keys):
        raise SecureAggregationError("the update releases statistics the round's layout does not hold")
    return np.asarray(values, dtype=np.float64)
