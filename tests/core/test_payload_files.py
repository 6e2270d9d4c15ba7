"""Decoding from a spooled file agrees with aslora_core.serialization's decoding from bytes."""

from __future__ import annotations

from pathlib import Path

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
from aslora_core.payload_files import state_from_file, update_from_file
from aslora_core.serialization import (
    SerializationError,
    state_from_bytes,
    state_to_bytes,
    update_from_bytes,
    update_to_bytes,
)


def _state() -> AdapterState:
    generator = torch.Generator().manual_seed(0)
    layers = {
        f"layer.{i}": LayerFactors(
            a=torch.randn(4, 6, generator=generator), b=torch.randn(5, 4, generator=generator)
        )
        for i in range(3)
    }
    return AdapterState(
        layers=layers, head={"classifier.weight": torch.randn(2, 5, generator=generator)}, scaling=2.0
    )


def _update(with_statistics: bool) -> SiloUpdate:
    state = _state()
    statistics = SiloStatistics(
        layers={"layer.0": {Factor.B: FactorStatistics(grad_sq=0.25, proj_sq=-1e-3)}},
        steps=3,
        noise_variance=1e-4,
    )
    return SiloUpdate(
        silo_id="silo-01",
        weight=37.0,
        factors={
            "layer.0": {Factor.B: state.layers["layer.0"].b},
            "layer.1": {Factor.A: state.layers["layer.1"].a},
        },
        head=dict(state.head),
        statistics=statistics if with_statistics else None,
    )


def _same_tensors(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> bool:
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_a_state_read_from_its_file_equals_the_one_read_from_its_bytes(tmp_path: Path) -> None:
    payload = state_to_bytes(_state())
    (tmp_path / "state").write_bytes(payload)
    from_file, from_bytes = state_from_file(tmp_path / "state"), state_from_bytes(payload)
    assert from_file.scaling == from_bytes.scaling
    assert from_file.layer_names == from_bytes.layer_names
    for name in from_file.layer_names:
        assert torch.equal(from_file.layers[name].a, from_bytes.layers[name].a)
        assert torch.equal(from_file.layers[name].b, from_bytes.layers[name].b)
    assert _same_tensors(dict(from_file.head), dict(from_bytes.head))


@pytest.mark.parametrize("with_statistics", [True, False])
def test_an_update_read_from_its_file_equals_the_one_read_from_its_bytes(
    tmp_path: Path, with_statistics: bool
) -> None:
    payload = update_to_bytes(_update(with_statistics))
    (tmp_path / "update").write_bytes(payload)
    from_file, from_bytes = update_from_file(tmp_path / "update"), update_from_bytes(payload)
    assert (from_file.silo_id, from_file.weight, from_file.statistics) == (
        from_bytes.silo_id,
        from_bytes.weight,
        from_bytes.statistics,
    )
    assert from_file.factors.keys() == from_bytes.factors.keys()
    for layer in from_file.factors:
        assert _same_tensors(
            {f.value: t for f, t in from_file.factors[layer].items()},
            {f.value: t for f, t in from_bytes.factors[layer].items()},
        )
    assert _same_tensors(dict(from_file.head), dict(from_bytes.head))


def test_a_file_of_another_format_or_garbage_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_bytes(state_to_bytes(_state()))
    with pytest.raises(SerializationError, match="expected format"):
        update_from_file(tmp_path / "state")
    (tmp_path / "garbage").write_bytes(b"\x10" + bytes(40))
    with pytest.raises(SerializationError):
        state_from_file(tmp_path / "garbage")
