"""Safetensors round trips of adapter states and silo updates, and rejection of garbage."""

from __future__ import annotations

import json

import pytest

from aslora_core.factors import StatisticsNoise
from aslora_core.serialization import (
    SerializationError,
    state_from_bytes,
    state_to_bytes,
    statistics_bytes,
    update_from_bytes,
    update_to_bytes,
)
from tests.core.payloads import SAMPLE_NOISE, same_states, same_updates, sample_state, sample_update

STATISTICS_BYTES = (2 * 2 + 3) * 8
"""The sample's statistics: two factors, two float64 terms each, and B's three secant sums."""
SERIALIZATIONS = 20
"""safetensors alone orders a two-key metadata map differently in about half its calls."""


def test_state_round_trip_is_bitwise() -> None:
    state = sample_state()
    assert same_states(state_from_bytes(state_to_bytes(state)), state)


@pytest.mark.parametrize("with_statistics", [True, False])
def test_update_round_trip_keeps_factors_head_and_statistics(with_statistics: bool) -> None:
    update = sample_update(with_statistics=with_statistics)
    assert same_updates(update_from_bytes(update_to_bytes(update), SAMPLE_NOISE), update)
    assert statistics_bytes(update) == (STATISTICS_BYTES if with_statistics else 0)


def test_equal_states_and_updates_serialize_to_equal_bytes() -> None:
    """A restarted coordinator announces the checksum of the adapter a silo may be downloading from its
    predecessor: the bytes must not depend on the process or the call."""
    state, update = sample_state(), sample_update(with_statistics=True)
    assert len({state_to_bytes(state) for _ in range(SERIALIZATIONS)}) == 1
    assert len({update_to_bytes(update) for _ in range(SERIALIZATIONS)}) == 1
    assert same_states(state_from_bytes(state_to_bytes(state)), state)


@pytest.mark.parametrize(
    "payload", [b"", b"garbage", b"\xff" * 64, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "]
)
def test_garbage_is_rejected(payload: bytes) -> None:
    with pytest.raises(SerializationError):
        update_from_bytes(payload, SAMPLE_NOISE)


def test_a_state_is_not_accepted_as_an_update() -> None:
    with pytest.raises(SerializationError, match="expected format"):
        update_from_bytes(state_to_bytes(sample_state()), SAMPLE_NOISE)


def test_the_noise_of_the_statistics_is_the_receivers_not_the_senders() -> None:
    sent = sample_update(with_statistics=True)
    published = StatisticsNoise(steps=2, noise_variance=0.25)
    received = update_from_bytes(update_to_bytes(sent), published).statistics
    assert received is not None and sent.statistics is not None
    assert (received.steps, received.noise_variance) == (published.steps, published.noise_variance)
    assert received.layers == sent.statistics.layers


def test_the_wire_form_carries_no_step_count_or_noise_variance() -> None:
    payload = update_to_bytes(sample_update(with_statistics=True))
    header = json.loads(payload[8 : 8 + int.from_bytes(payload[:8], "little")])
    assert not {"steps", "noise_variance"} & set(header["__metadata__"])
