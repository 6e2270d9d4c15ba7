"""Aggregation rules: exactness of the one-factor mean, FedIT's error, SVD's optimality, validation."""

from __future__ import annotations

import random
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aslora_core.aggregation import AggregationError, aggregate
from aslora_core.aggregation_rule import AggregationRule
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import AdapterState, LayerFactors, SiloUpdate

RANK = 3
SHAPES = {"l0.q": (12, 10), "l0.v": (12, 10), "l1.q": (9, 14)}
"""Layer name -> (m, n): two layers share a shape (batched together), one differs."""
FLOAT64_TOL = 1e-12
SVD_TOL = 1e-10


def make_state(seed: int, dtype: torch.dtype = torch.float64) -> AdapterState:
    """A global adapter with random A and non-zero B, and a two-tensor head."""
    gen = torch.Generator().manual_seed(seed)
    layers = {
        name: LayerFactors(
            a=torch.randn(RANK, n, generator=gen, dtype=dtype),
            b=torch.randn(m, RANK, generator=gen, dtype=dtype),
        )
        for name, (m, n) in SHAPES.items()
    }
    head = {
        "w": torch.randn(2, 12, generator=gen, dtype=dtype),
        "bias": torch.randn(2, generator=gen, dtype=dtype),
    }
    return AdapterState(layers=layers, head=head, scaling=2.0)


def make_updates(
    state: AdapterState, selection: dict[str, FactorChoice], silos: int, seed: int
) -> list[SiloUpdate]:
    """Silo updates with random values for the selected factors and the head, and random weights."""
    gen = torch.Generator().manual_seed(seed)
    updates = []
    for i in range(silos):
        factors = {
            name: {
                f: torch.randn(state.layers[name].factor(f).shape, generator=gen, dtype=torch.float64).to(
                    state.layers[name].a.dtype
                )
                for f in choice.factors
            }
            for name, choice in selection.items()
        }
        head = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in state.head.items()}
        weight = float(torch.rand((), generator=gen, dtype=torch.float64)) + 0.1
        updates.append(SiloUpdate(silo_id=f"silo-{i:02d}", weight=weight, factors=factors, head=head))
    return updates


MIXED = {"l0.q": FactorChoice.B, "l0.v": FactorChoice.A, "l1.q": FactorChoice.B}
BOTH = dict.fromkeys(SHAPES, FactorChoice.BOTH)


def probabilities(updates: list[SiloUpdate]) -> list[float]:
    total = sum(u.weight for u in updates)
    return [u.weight / total for u in updates]


def mean_product(updates: list[SiloUpdate], state: AdapterState, name: str) -> torch.Tensor:
    """sum_i p_i B_i A_i formed explicitly, the partner taken from the global state where not sent."""
    total = torch.zeros(state.layers[name].product().shape, dtype=torch.float64)
    for p, u in zip(probabilities(updates), updates, strict=True):
        sent = u.factors[name]
        total += p * sent.get(Factor.B, state.layers[name].b) @ sent.get(Factor.A, state.layers[name].a)
    return total


def test_exact_mean_gives_the_mean_product_and_keeps_the_partner() -> None:
    state = make_state(0)
    updates = make_updates(state, MIXED, silos=5, seed=1)
    result = aggregate(state, updates, MIXED, AggregationRule.EXACT)
    assert result.product_error == {}
    for name, choice in MIXED.items():
        new, old = result.state.layers[name], state.layers[name]
        torch.testing.assert_close(
            new.product(), mean_product(updates, state, name), rtol=FLOAT64_TOL, atol=FLOAT64_TOL
        )
        frozen = Factor.A if choice is FactorChoice.B else Factor.B
        assert torch.equal(new.factor(frozen), old.factor(frozen))
    expected_head = sum(p * u.head["w"] for p, u in zip(probabilities(updates), updates, strict=True))
    torch.testing.assert_close(result.state.head["w"], expected_head, rtol=FLOAT64_TOL, atol=FLOAT64_TOL)
    assert result.state.scaling == state.scaling


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), silos=st.integers(1, 6), rule=st.sampled_from(list(AggregationRule)))
def test_result_is_bitwise_independent_of_arrival_order(seed: int, silos: int, rule: AggregationRule) -> None:
    state = make_state(seed, dtype=torch.float32)
    selection = MIXED if rule is AggregationRule.EXACT else BOTH
    updates = make_updates(state, selection, silos, seed + 1)
    shuffled = list(updates)
    random.Random(seed).shuffle(shuffled)
    first = aggregate(state, updates, selection, rule)
    second = aggregate(state, shuffled, selection, rule)
    for name in SHAPES:
        for f in Factor:
            assert torch.equal(first.state.layers[name].factor(f), second.state.layers[name].factor(f))
            assert first.state.layers[name].factor(f).dtype == torch.float32
    for key in state.head:
        assert torch.equal(first.state.head[key], second.state.head[key])
    assert first.product_error == second.product_error


def test_one_silo_exact_mean_is_that_silo() -> None:
    state = make_state(3, dtype=torch.float32)
    [update] = make_updates(state, MIXED, silos=1, seed=4)
    result = aggregate(state, [update], MIXED, AggregationRule.EXACT)
    for name, choice in MIXED.items():
        [f] = choice.factors
        assert torch.equal(result.state.layers[name].factor(f), update.factors[name][f])


def test_fedit_reports_its_product_error() -> None:
    state = make_state(5)
    updates = make_updates(state, BOTH, silos=4, seed=6)
    result = aggregate(state, updates, BOTH, AggregationRule.SEPARATE_MEANS)
    p = probabilities(updates)
    assert set(result.product_error) == set(SHAPES)
    for name in SHAPES:
        b_mean = sum(w * u.factors[name][Factor.B] for w, u in zip(p, updates, strict=True))
        a_mean = sum(w * u.factors[name][Factor.A] for w, u in zip(p, updates, strict=True))
        assert isinstance(b_mean, torch.Tensor) and isinstance(a_mean, torch.Tensor)
        torch.testing.assert_close(result.state.layers[name].b, b_mean, rtol=FLOAT64_TOL, atol=FLOAT64_TOL)
        target = mean_product(updates, state, name)
        expected = float(torch.linalg.norm(b_mean @ a_mean - target) / torch.linalg.norm(target))
        assert expected > 0.1
        assert result.product_error[name] == pytest.approx(expected, rel=1e-8)


def test_fedit_with_identical_silos_has_no_error() -> None:
    state = make_state(7)
    [update] = make_updates(state, BOTH, silos=1, seed=8)
    twins = [
        SiloUpdate(silo_id=s, weight=w, factors=update.factors, head=update.head)
        for s, w in (("x", 1.0), ("y", 3.0))
    ]
    errors = aggregate(state, twins, BOTH, AggregationRule.SEPARATE_MEANS).product_error
    assert max(errors.values()) < 1e-7


def test_svd_is_the_best_rank_r_approximation_of_the_mean_product() -> None:
    state = make_state(9)
    updates = make_updates(state, BOTH, silos=4, seed=10)
    result = aggregate(state, updates, BOTH, AggregationRule.SVD)
    assert result.product_error == {}
    for name in SHAPES:
        target = mean_product(updates, state, name).numpy()
        u, s, vt = np.linalg.svd(target)
        best = (u[:, :RANK] * s[:RANK]) @ vt[:RANK]
        new = result.state.layers[name]
        np.testing.assert_allclose(new.product().numpy(), best, rtol=0, atol=SVD_TOL * np.abs(best).max())
        # balanced factors: B^T B = A A^T = diag(S)
        np.testing.assert_allclose((new.b.mT @ new.b).numpy(), np.diag(s[:RANK]), atol=SVD_TOL * s[0])
        np.testing.assert_allclose((new.a @ new.a.mT).numpy(), np.diag(s[:RANK]), atol=SVD_TOL * s[0])


def test_single_factor_layers_stay_exact_under_every_rule() -> None:
    state = make_state(11)
    updates = make_updates(state, MIXED, silos=3, seed=12)
    for rule in (AggregationRule.SEPARATE_MEANS, AggregationRule.SVD):
        result = aggregate(state, updates, MIXED, rule)
        assert result.product_error == {}
        for name in SHAPES:
            torch.testing.assert_close(
                result.state.layers[name].product(),
                mean_product(updates, state, name),
                rtol=FLOAT64_TOL,
                atol=FLOAT64_TOL,
            )


def _bad_inputs() -> list[tuple[str, list[SiloUpdate], dict[str, FactorChoice], AggregationRule]]:
    state = make_state(13)
    good = make_updates(state, MIXED, silos=2, seed=14)
    first = good[0]
    wrong_factor = {**first.factors, "l0.q": {Factor.A: state.layers["l0.q"].a}}
    extra_factor = {
        **first.factors,
        "l0.q": {Factor.A: state.layers["l0.q"].a, Factor.B: state.layers["l0.q"].b},
    }
    wrong_shape = {**first.factors, "l0.q": {Factor.B: torch.zeros(12, RANK + 1, dtype=torch.float64)}}
    wrong_dtype = {**first.factors, "l0.q": {Factor.B: torch.zeros(12, RANK, dtype=torch.float32)}}
    missing_layer = {k: v for k, v in first.factors.items() if k != "l1.q"}
    return [
        ("no updates", [], MIXED, AggregationRule.EXACT),
        ("two updates from silo", [first, first], MIXED, AggregationRule.EXACT),
        ("asked for B", [replace(first, factors=wrong_factor)], MIXED, AggregationRule.EXACT),
        ("asked for B", [replace(first, factors=extra_factor)], MIXED, AggregationRule.EXACT),
        ("expected (12, 3)", [replace(first, factors=wrong_shape)], MIXED, AggregationRule.EXACT),
        ("torch.float32", [replace(first, factors=wrong_dtype)], MIXED, AggregationRule.EXACT),
        ("layers", [replace(first, factors=missing_layer)], MIXED, AggregationRule.EXACT),
        ("head", [replace(first, head={})], MIXED, AggregationRule.EXACT),
        ("weight", [replace(first, weight=0.0)], MIXED, AggregationRule.EXACT),
        ("weight", [replace(first, weight=float("nan"))], MIXED, AggregationRule.EXACT),
        ("exactly the adapter's layers", good, {"l0.q": FactorChoice.B}, AggregationRule.EXACT),
        ("one factor per layer", good, {**MIXED, "l0.q": FactorChoice.BOTH}, AggregationRule.EXACT),
    ]


@pytest.mark.parametrize("case", range(len(_bad_inputs())))
def test_invalid_updates_are_refused_with_a_clear_error(case: int) -> None:
    message, updates, selection, rule = _bad_inputs()[case]
    with pytest.raises(AggregationError, match=re.escape(message)):
        aggregate(make_state(13), updates, selection, rule)
