"""A sample adapter state and silo update, and equality checks for them, for the serialization tests."""

from __future__ import annotations

import torch

from aslora_core.factor_choice import Factor
from aslora_core.factors import (
    AdapterState,
    CurvatureStatistics,
    FactorStatistics,
    LayerFactors,
    SiloStatistics,
    SiloUpdate,
    StatisticsNoise,
)

LAYERS = 3
RANK = 4
SCALING = 2.0


def sample_state() -> AdapterState:
    """Three layers of random factors (A 4 x 6, B 5 x 4) and a head, from a fixed seed."""
    generator = torch.Generator().manual_seed(0)
    layers = {
        f"layer.{i}.query": LayerFactors(
            a=torch.randn(RANK, 6, generator=generator), b=torch.randn(5, RANK, generator=generator)
        )
        for i in range(LAYERS)
    }
    return AdapterState(
        layers=layers, head={"classifier.weight": torch.randn(2, 5, generator=generator)}, scaling=SCALING
    )


SAMPLE_NOISE = StatisticsNoise(steps=5, noise_variance=1.5e-6)
"""How the sample's statistics were noised, as a receiver computes it from what it published."""


def sample_statistics() -> SiloStatistics:
    """Cross-step statistics of both factors of the first layer (one negative projection term), and the
    secant sums of its trained factor B."""
    secants = CurvatureStatistics(secant=0.75, step_sq=0.125, step_change=2.5)
    return SiloStatistics(
        layers={
            "layer.0.query": {
                Factor.A: FactorStatistics(0.5, -0.25),
                Factor.B: FactorStatistics(1e-9, 3.0, curvature=secants),
            }
        },
        steps=SAMPLE_NOISE.steps,
        noise_variance=SAMPLE_NOISE.noise_variance,
    )


def sample_update(*, with_statistics: bool) -> SiloUpdate:
    """An update of B in the first layer and A in the second, with the head of `sample_state`."""
    state = sample_state()
    return SiloUpdate(
        silo_id="silo-01",
        weight=37.0,
        factors={
            "layer.0.query": {Factor.B: state.layers["layer.0.query"].b},
            "layer.1.query": {Factor.A: state.layers["layer.1.query"].a},
        },
        head=dict(state.head),
        statistics=sample_statistics() if with_statistics else None,
    )


def same_states(left: AdapterState, right: AdapterState) -> bool:
    """Bitwise equal factors, head and scaling."""
    return (
        left.scaling == right.scaling
        and left.layer_names == right.layer_names
        and all(
            torch.equal(mine.a, theirs.a) and torch.equal(mine.b, theirs.b)
            for mine, theirs in ((left.layers[n], right.layers[n]) for n in left.layer_names)
        )
        and _same_tensors(dict(left.head), dict(right.head))
    )


def same_updates(left: SiloUpdate, right: SiloUpdate) -> bool:
    """Bitwise equal factors and head, and equal sender, weight and statistics."""
    return (
        (left.silo_id, left.weight, left.statistics) == (right.silo_id, right.weight, right.statistics)
        and left.factors.keys() == right.factors.keys()
        and all(
            _same_tensors(
                {f.value: t for f, t in left.factors[layer].items()},
                {f.value: t for f, t in right.factors[layer].items()},
            )
            for layer in left.factors
        )
        and _same_tensors(dict(left.head), dict(right.head))
    )


def _same_tensors(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> bool:
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)
