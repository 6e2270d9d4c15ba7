"""Fixed-point encoding in Z_{2^64}: the overflow bound is checked before encoding, the layout enforced."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from aslora_rpc.secure_aggregation.errors import RingOverflowError, SecureAggregationError
from aslora_rpc.secure_aggregation.fixed_point import SUM_MAGNITUDE_BITS, RingCodec
from tests.secure_aggregation.federation import round_setup

SILO = "silo-a"


def test_a_value_past_the_bound_is_refused_with_the_reason() -> None:
    """A head value just past 2^62 / (W 2^f) is refused naming the bound; one at the bound encodes, and
    the largest possible sum of the round's silos stays below 2^63."""
    _, layout, codec, updates = round_setup()
    update = updates[SILO]
    key = sorted(update.head)[0]
    past = torch.full_like(update.head[key], codec.value_bound * 1.01)
    with pytest.raises(RingOverflowError, match="could wrap the 2\\^64 ring"):
        codec.encode(dataclasses.replace(update, head={**update.head, key: past}), layout)
    assert codec.round_weight * codec.value_bound * codec.scale == pytest.approx(2.0**SUM_MAGNITUDE_BITS)


def test_a_tighter_ring_scale_refuses_what_a_coarser_one_accepts() -> None:
    """The bound depends on the total weight and the scale: f = 48 with W = 546 allows |x| up to about 30."""
    _, layout, _, updates = round_setup()
    update = updates[SILO]
    key = sorted(update.head)[0]
    large = dataclasses.replace(update, head={**update.head, key: torch.full_like(update.head[key], 100.0)})
    RingCodec(round_weight=546.0).encode(large, layout)
    with pytest.raises(RingOverflowError):
        RingCodec(round_weight=546.0, fraction_bits=48).encode(large, layout)


def test_encoding_is_twos_complement_of_the_rounded_weighted_value() -> None:
    """A negative value encodes as 2^64 - round(w |x| 2^f)."""
    _, layout, codec, updates = round_setup()
    update = updates[SILO]
    words = codec.encode(update, layout)
    first = float(update.factors[layout.factors[0][0]][layout.factors[0][1]].reshape(-1)[0])
    expected = round(update.weight * first * codec.scale) % 2**64
    assert int(words[0]) == expected
    assert words.dtype == np.uint64 and words.shape == (layout.length,)


def test_an_update_that_does_not_match_the_layout_is_refused() -> None:
    """Missing statistics, a missing head tensor, a non-finite value, or a weight past the round's total."""
    _, layout, codec, updates = round_setup()
    update = updates[SILO]
    key = sorted(update.head)[0]
    cases = {
        "has none": dataclasses.replace(update, statistics=None),
        "head": dataclasses.replace(update, head={k: v for k, v in update.head.items() if k != key}),
        "not finite": dataclasses.replace(
            update, head={**update.head, key: torch.full_like(update.head[key], torch.nan)}
        ),
        "at most the round's total": dataclasses.replace(update, weight=codec.round_weight * 2),
    }
    for reason, bad in cases.items():
        with pytest.raises(SecureAggregationError, match=reason):
            codec.encode(bad, layout)
