"""Safetensors round trips of adapter states and silo updates, and rejection of garbage."""

from __future__ import annotations

import pytest
import torch

from aslora_core.factors import (
    AdapterState,
    Factor,
    FactorStatistics,
    LayerFactors,
    SiloStatistics,
    SiloUpdate,
)
from aslora_core.serialization import (
    SerializationError,
    state_from_bytes,
    state_to_bytes,
    statistics_bytes,
    update_from_bytes,
    update_to_bytes,
)


def _state() -> AdapterState:
    generator = torch.Generator().manual_seed(0)
    layers = {
        f"layer.{i}.query": LayerFactors(
            a=torch.randn(4, 6, generator=generator), b=torch.randn(5, 4, generator=generator)
        )
        for i in range(3)
    }
    return AdapterState(
        layers=layers, head={"classifier.weight": torch.randn(2, 6, generator=generator)}, scaling=2.0
    )


def test_state_round_trip_is_bitwise() -> None:
    state = _state()
    restored = state_from_bytes(state_to_bytes(state))
    assert restored.scaling == state.scaling
    assert restored.layer_names == state.layer_names
    for name in state.layer_names:
        assert torch.equal(restored.layers[name].a, state.layers[name].a)
        assert torch.equal(restored.layers[name].b, state.layers[name].b)
    assert torch.equal(restored.head["classifier.weight"], state.head["classifier.weight"])


def test_update_round_trip_keeps_factors_head_and_statistics() -> None:
    state = _state()
    statistics = SiloStatistics(
        layers={
            "layer.0.query": {Factor.A: FactorStatistics(0.5, -0.25), Factor.B: FactorStatistics(1e-9, 3.0)}
        },
        steps=5,
        noise_variance=1.5e-6,
    )
    update = SiloUpdate(
        silo_id="silo-01",
        weight=123.0,
        factors={name: {Factor.B: state.layers[name].b} for name in state.layer_names},
        head=dict(state.head),
        statistics=statistics,
    )
    restored = update_from_bytes(update_to_bytes(update))
    assert restored.silo_id == "silo-01" and restored.weight == 123.0
    assert restored.statistics == statistics
    for name in state.layer_names:
        assert set(restored.factors[name]) == {Factor.B}
        assert torch.equal(restored.factors[name][Factor.B], state.layers[name].b)
    assert statistics_bytes(update) == 2 * 2 * 8


@pytest.mark.parametrize(
    "payload", [b"", b"garbage", b"\xff" * 64, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "]
)
def test_garbage_is_rejected(payload: bytes) -> None:
    with pytest.raises(SerializationError):
        update_from_bytes(payload)


def test_a_state_is_not_accepted_as_an_update() -> None:
    with pytest.raises(SerializationError, match="expected format"):
        update_from_bytes(state_to_bytes(_state()))
