"""The weighted mean of the survivors' updates, decoded from an UnmaskedSum and the public weights."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from aslora_core.factor_choice import Factor
from aslora_core.factors import FactorStatistics
from aslora_rpc.secure_aggregation.errors import SecureAggregationError
from aslora_rpc.secure_aggregation.fixed_point import STATISTICS_PER_FACTOR, RingCodec, UpdateLayout
from aslora_rpc.secure_aggregation.unmasking import UnmaskedSum


@dataclass(frozen=True)
class DecodedMean:
    """The survivors' weighted means: factors, head, pooled statistics, and the weight they divide by."""

    factors: Mapping[str, Mapping[Factor, torch.Tensor]]
    head: Mapping[str, torch.Tensor]
    statistics: Mapping[str, Mapping[Factor, FactorStatistics]]
    total_weight: float
    survivors: frozenset[str]


def decode_mean(
    unmasked: UnmaskedSum, layout: UpdateLayout, codec: RingCodec, weights: Mapping[str, float]
) -> DecodedMean:
    """Divide the unmasked sum by 2^f and by the survivors' total public weight, split it by `layout`."""
    if set(weights) != unmasked.survivors:
        raise SecureAggregationError("the weights must name exactly the survivors")
    if unmasked.words.shape[0] != layout.length:
        raise SecureAggregationError(
            f"a sum of {unmasked.words.shape[0]} values, the layout holds {layout.length}"
        )
    total = math.fsum(weights.values())
    values = torch.from_numpy(np.ascontiguousarray(codec.decode(unmasked.words, total)))
    offset = 0

    def take(shape: tuple[int, ...]) -> torch.Tensor:
        nonlocal offset
        size = math.prod(shape)
        tensor = values[offset : offset + size].reshape(shape).to(layout.dtype)
        offset += size
        return tensor

    factors: dict[str, dict[Factor, torch.Tensor]] = {}
    for name, factor, shape in layout.factors:
        factors.setdefault(name, {})[factor] = take(shape)
    head = {key: take(shape) for key, shape in layout.head}
    statistics: dict[str, dict[Factor, FactorStatistics]] = {}
    for layer, factor in layout.statistics:
        grad_sq, proj_sq = values[offset : offset + STATISTICS_PER_FACTOR].tolist()
        offset += STATISTICS_PER_FACTOR
        statistics.setdefault(layer, {})[factor] = FactorStatistics(grad_sq=grad_sq, proj_sq=proj_sq)
    return DecodedMean(
        factors=factors, head=head, statistics=statistics, total_weight=total, survivors=unmasked.survivors
    )
