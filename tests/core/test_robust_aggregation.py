"""Robust combiners (coordinate-wise median, trimmed mean) and uniform weighting."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from aslora_core.aggregation import AggregationError, aggregate
from aslora_core.aggregation_rule import AggregationRule
from aslora_core.config import Combiner, ConfigError, FederationSettings, LrSchedule, Weighting
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import SiloUpdate
from aslora_core.rounds import RoundEngine
from aslora_core.selection import make_policy
from aslora_core.training.schedule import LearningRates
from tests.core.test_aggregation import make_state, make_updates

SILOS = 7
HOSTILE_OFFSET = 1e6
TRIM_FRACTION = 0.3


def _selection() -> dict[str, FactorChoice]:
    return {"l0.q": FactorChoice.B, "l0.v": FactorChoice.A, "l1.q": FactorChoice.B}


def _stack(updates: list[SiloUpdate], name: str, factor: Factor) -> np.ndarray:
    return np.stack([u.factors[name][factor].numpy() for u in updates])


@pytest.mark.parametrize("silos", [SILOS, SILOS - 1])
def test_median_is_the_coordinate_wise_median_of_odd_and_even_counts(silos: int) -> None:
    state, selection = make_state(0), _selection()
    updates = make_updates(state, selection, silos, seed=1)
    result = aggregate(state, updates, selection, AggregationRule.EXACT, combiner=Combiner.MEDIAN)
    for name, choice in selection.items():
        [factor] = choice.factors
        expected = np.median(_stack(updates, name, factor), axis=0)
        np.testing.assert_allclose(result.state.layers[name].factor(factor).numpy(), expected, rtol=1e-12)
        partner = Factor.A if factor is Factor.B else Factor.B
        assert torch.equal(result.state.layers[name].factor(partner), state.layers[name].factor(partner))
    heads = np.stack([u.head["w"].numpy() for u in updates])
    np.testing.assert_allclose(result.state.head["w"].numpy(), np.median(heads, axis=0), rtol=1e-12)


def test_trimmed_mean_drops_the_extremes_of_each_coordinate() -> None:
    state, selection = make_state(2), _selection()
    updates = make_updates(state, selection, SILOS, seed=3)
    result = aggregate(
        state,
        updates,
        selection,
        AggregationRule.EXACT,
        combiner=Combiner.TRIMMED_MEAN,
        trim_fraction=TRIM_FRACTION,
    )
    cut = int(TRIM_FRACTION * SILOS)
    values = np.sort(_stack(updates, "l1.q", Factor.B), axis=0)[cut : SILOS - cut]
    np.testing.assert_allclose(result.state.layers["l1.q"].b.numpy(), values.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize("combiner", [Combiner.MEDIAN, Combiner.TRIMMED_MEAN])
def test_a_minority_of_hostile_silos_cannot_drag_a_robust_aggregate(combiner: Combiner) -> None:
    state, selection = make_state(4), _selection()
    honest = make_updates(state, selection, SILOS, seed=5)
    hostile = [
        replace(
            u,
            factors={n: {f: t + HOSTILE_OFFSET for f, t in per.items()} for n, per in u.factors.items()},
        )
        for u in honest[:2]
    ]
    attacked = hostile + honest[2:]
    robust = aggregate(
        state, attacked, selection, AggregationRule.EXACT, combiner=combiner, trim_fraction=TRIM_FRACTION
    )
    mean = aggregate(state, attacked, selection, AggregationRule.EXACT)
    honest_max = float(np.abs(_stack(honest, "l0.q", Factor.B)).max())
    assert float(robust.state.layers["l0.q"].b.abs().max()) <= honest_max
    assert float(mean.state.layers["l0.q"].b.abs().max()) > HOSTILE_OFFSET / SILOS


def test_a_robust_combiner_is_taken_by_exactly_the_linear_rules() -> None:
    """FedIT's separate means are linear in each factor, so a median can replace them; SVD's cannot."""
    state = make_state(6)
    assert [rule for rule in AggregationRule if not rule.linear] == [AggregationRule.SVD]
    for rule in AggregationRule:
        selection = (
            _selection() if rule is AggregationRule.EXACT else dict.fromkeys(state.layers, FactorChoice.BOTH)
        )
        updates = make_updates(state, selection, 3, seed=7)
        if rule.linear:
            aggregate(state, updates, selection, rule, combiner=Combiner.MEDIAN)
        else:
            with pytest.raises(AggregationError, match=r"SVD rule .* no robust combiner"):
                aggregate(state, updates, selection, rule, combiner=Combiner.MEDIAN)


def test_the_svd_policy_refuses_robust_combiners() -> None:
    with pytest.raises(ConfigError, match="svd"):
        FederationSettings(policy="svd", combiner=Combiner.MEDIAN)


def test_uniform_weighting_ignores_dataset_sizes() -> None:
    state = make_state(8)
    policy = make_policy("ffa", state.layer_names, FederationSettings().score, 0, state.scaling)
    selection = dict.fromkeys(state.layers, FactorChoice.B)
    updates = make_updates(state, selection, 3, seed=9)
    engine = RoundEngine(
        policy, state, LearningRates(0.5, LrSchedule.CONSTANT, 1), weighting=Weighting.UNIFORM
    )
    outcome = engine.complete(selection, updates)
    expected = torch.stack([u.factors["l0.v"][Factor.B] for u in updates]).mean(dim=0)
    torch.testing.assert_close(outcome.state.layers["l0.v"].b, expected, rtol=1e-12, atol=1e-12)
