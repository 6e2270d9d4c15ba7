"""Selection policies: schedules, round 0 on B, reproducibility, registry and exact resumption."""

from __future__ import annotations

import json

import pytest
import torch

from aslora_core.aggregation_rule import AggregationRule
from aslora_core.config import CurvatureSource, ScoreSettings
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import (
    AdapterState,
    CurvatureStatistics,
    FactorStatistics,
    LayerFactors,
    SiloStatistics,
)
from aslora_core.policy_traits import POLICY_NAMES, policy_traits
from aslora_core.selection import SelectionPolicy, make_policy

LAYERS = [f"layer{i}.{kind}" for i in range(3) for kind in ("query", "value")]
RANK, WIDTH = 4, 16
ROUNDS = 12
SCALING = 2.0
LR = 0.5
NOISE_VARIANCE = 1e-6
STEPS = 5
MEASURED_CURVATURE = 0.5
"""What the made-up secant sums of B measure, ten times the default constant."""
ONE_FACTOR = ("aslora", "ffa", "rolora", "random", "fixed-split")


def make_state(round_index: int, b_scale: float = 0.1) -> AdapterState:
    """A global adapter whose B grows with the round, so a norm-based score has something to react to."""
    gen = torch.Generator().manual_seed(100 + round_index)
    layers = {
        name: LayerFactors(
            a=torch.randn(RANK, WIDTH, generator=gen) / WIDTH**0.5,
            b=torch.randn(WIDTH, RANK, generator=gen) * b_scale * round_index * (1 + i),
        )
        for i, name in enumerate(LAYERS)
    }
    return AdapterState(layers=layers, scaling=SCALING)


def secants(step_sq: float) -> CurvatureStatistics:
    """Secant sums of B that measure MEASURED_CURVATURE once the noise bias K v d is removed, precisely."""
    bias = (STEPS - 1) * NOISE_VARIANCE * WIDTH * RANK
    return CurvatureStatistics(
        secant=bias + MEASURED_CURVATURE * step_sq, step_sq=step_sq, step_change=WIDTH * RANK * NOISE_VARIANCE
    )


def make_statistics(round_index: int) -> list[tuple[float, SiloStatistics]]:
    """Two silos' statistics with made-up but deterministic evidence, and secant sums of B for the first
    layers."""
    result = []
    for silo in range(2):
        gen = torch.Generator().manual_seed(1000 * round_index + silo)
        values = (torch.rand(len(LAYERS), 2, 2, generator=gen) * 1e-3).tolist()
        layers = {
            name: {f: FactorStatistics(grad_sq=v[j][0], proj_sq=v[j][1]) for j, f in enumerate(Factor)}
            for name, v in zip(LAYERS, values, strict=True)
        }
        for name in LAYERS[:2]:
            grad_sq, proj_sq = values[LAYERS.index(name)][1]
            layers[name][Factor.B] = FactorStatistics(
                grad_sq, proj_sq, curvature=secants(step_sq=1e-3 * (1 + silo))
            )
        result.append((1.0 + silo, SiloStatistics(layers=layers, steps=STEPS, noise_variance=NOISE_VARIANCE)))
    return result


def policy(name: str, seed: int = 7, score: ScoreSettings | None = None) -> SelectionPolicy:
    return make_policy(name, LAYERS, score or ScoreSettings(), seed, SCALING)


def run(p: SelectionPolicy, rounds: range) -> list[dict[str, FactorChoice]]:
    """Select and observe round after round, as the coordinator does."""
    choices = []
    for t in rounds:
        choices.append(p.select(t, make_state(t)))
        p.observe(t, make_state(t + 1), make_statistics(t), LR)
    return choices


def test_registry_names_every_policy_and_refuses_unknown_ones() -> None:
    assert set(POLICY_NAMES) == {"aslora", "ffa", "rolora", "fedit", "lalora", "svd", "random", "fixed-split"}
    with pytest.raises(ValueError, match="aslora, ffa"):
        policy("fedavg")


@pytest.mark.parametrize("name", ONE_FACTOR)
def test_one_factor_policies_start_on_b_and_aggregate_exactly(name: str) -> None:
    p = policy(name)
    assert p.traits.aggregation is AggregationRule.EXACT
    assert p.select(0, make_state(0)) == dict.fromkeys(LAYERS, FactorChoice.B)
    for choices in run(p, range(ROUNDS)):
        assert set(choices) == set(LAYERS)
        assert FactorChoice.BOTH not in choices.values()


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("fedit", AggregationRule.SEPARATE_MEANS),
        ("lalora", AggregationRule.SEPARATE_MEANS),
        ("svd", AggregationRule.SVD),
    ],
)
def test_two_factor_baselines_train_both_everywhere(name: str, rule: AggregationRule) -> None:
    p = policy(name)
    assert p.traits.aggregation is rule
    assert all(c == dict.fromkeys(LAYERS, FactorChoice.BOTH) for c in run(p, range(ROUNDS)))


def test_ffa_and_rolora_schedules() -> None:
    for t, choices in enumerate(run(policy("ffa"), range(ROUNDS))):
        assert set(choices.values()) == {FactorChoice.B}, t
    for t, choices in enumerate(run(policy("rolora"), range(ROUNDS))):
        assert set(choices.values()) == {FactorChoice.B if t % 2 == 0 else FactorChoice.A}, t


def test_fixed_split_alternates_two_halves_in_opposite_phase() -> None:
    history = run(policy("fixed-split"), range(ROUNDS))
    first, second = LAYERS[: len(LAYERS) // 2], LAYERS[len(LAYERS) // 2 :]
    ordered = sorted(LAYERS)
    for t, choices in enumerate(history[1:], start=1):
        on_b_first = FactorChoice.B if t % 2 == 1 else FactorChoice.A
        on_b_second = FactorChoice.A if t % 2 == 1 else FactorChoice.B
        assert all(choices[n] == on_b_first for n in ordered[: len(first)])
        assert all(choices[n] == on_b_second for n in ordered[len(first) :])
    assert second  # both halves are non-empty


def test_random_is_reproducible_by_seed_and_varies_across_layers_and_rounds() -> None:
    one = run(policy("random", seed=3), range(ROUNDS))
    assert one == run(policy("random", seed=3), range(ROUNDS))
    assert one != run(policy("random", seed=4), range(ROUNDS))
    drawn = [c for choices in one[1:] for c in choices.values()]
    assert drawn.count(FactorChoice.A) > len(drawn) // 4
    assert drawn.count(FactorChoice.B) > len(drawn) // 4
    # stateless: asking for a round out of order gives the same answer
    assert policy("random", seed=3).select(5, make_state(5)) == one[5]


def test_random_policy_refuses_a_negative_seed() -> None:
    with pytest.raises(ValueError, match="seed"):
        policy("random", seed=-1)


@pytest.mark.parametrize("name", POLICY_NAMES)
@pytest.mark.parametrize("estimator", ["norm", "gradient", "hybrid"])
@pytest.mark.parametrize("curvature", list(CurvatureSource))
def test_state_dict_round_trip_gives_identical_future_selections(
    name: str, estimator: str, curvature: CurvatureSource
) -> None:
    score = ScoreSettings(estimator=estimator, z=0.5, curvature=curvature)
    original = policy(name, score=score)
    run(original, range(5))
    saved = json.loads(json.dumps(original.state_dict()))
    resumed = policy(name, seed=7, score=score)
    resumed.load_state_dict(saved)
    assert resumed.state_dict() == original.state_dict()
    assert run(resumed, range(5, ROUNDS)) == run(original, range(5, ROUNDS))


def test_loading_another_policys_state_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be loaded"):
        policy("ffa").load_state_dict(policy("rolora").state_dict())
    with pytest.raises(ValueError, match="scored by"):
        policy("aslora", score=ScoreSettings(estimator="norm")).load_state_dict(
            policy("aslora", score=ScoreSettings(estimator="hybrid")).state_dict()
        )


def test_selection_refuses_an_adapter_with_other_layers() -> None:
    state = make_state(1)
    other = AdapterState(layers={"elsewhere": state.layers[LAYERS[0]]}, scaling=SCALING)
    with pytest.raises(ValueError, match="layers"):
        policy("ffa").select(1, other)


def test_aslora_refuses_to_observe_a_round_twice() -> None:
    p = policy("aslora")
    p.observe(0, make_state(1), make_statistics(0), LR)
    with pytest.raises(ValueError, match="observed after"):
        p.observe(0, make_state(1), make_statistics(0), LR)


def test_aslora_norm_moves_layers_to_a_once_b_outgrows_a() -> None:
    # with little curvature the norm score compares n ||B||^2 with m ||A||^2 (square layers here)
    p = policy("aslora", score=ScoreSettings(estimator="norm", curvature_scale=1e-6))
    p.observe(0, make_state(0), make_statistics(0), LR)  # B = 0: A has no gradient, B stays
    assert p.select(1, make_state(1)) == dict.fromkeys(LAYERS, FactorChoice.B)
    p.observe(1, make_state(1, b_scale=1.0), make_statistics(1), LR)  # ||B||_F >> ||A||_F
    assert p.select(2, make_state(2)) == dict.fromkeys(LAYERS, FactorChoice.A)


def test_aslora_exposes_the_smoothed_scores_behind_its_choices() -> None:
    p = policy("aslora", score=ScoreSettings(estimator="norm", curvature_scale=1e-6))
    assert p.smoothed_scores() == {}
    p.observe(0, make_state(0), make_statistics(0), LR)
    p.observe(1, make_state(1, b_scale=1.0), make_statistics(1), LR)
    scores = p.smoothed_scores()
    assert sorted(scores) == LAYERS
    assert all(per_factor[Factor.A].mean > per_factor[Factor.B].mean for per_factor in scores.values())
    assert p.select(2, make_state(2)) == dict.fromkeys(LAYERS, FactorChoice.A)


@pytest.mark.parametrize("name", [n for n in POLICY_NAMES if not policy_traits(n).reads_statistics])
def test_fixed_rules_have_no_scores(name: str) -> None:
    p = policy(name)
    run(p, range(2))
    assert p.smoothed_scores() == {}


def test_aslora_without_statistics_keeps_its_choices() -> None:
    p = policy("aslora")
    p.observe(0, make_state(1, b_scale=10.0), [], LR)
    assert p.select(1, make_state(1)) == dict.fromkeys(LAYERS, FactorChoice.B)


@pytest.mark.parametrize("curvature", list(CurvatureSource))
def test_aslora_uses_a_significant_curvature_estimate_only_when_told_to(curvature: CurvatureSource) -> None:
    """Layers whose B released secants get the measured curvature for B and, by their layer, for A; the
    others keep the constant; under `constant` the estimates are kept but never used."""
    p = policy("aslora", score=ScoreSettings(curvature=curvature))
    assert not any(use.estimated for per in p.curvature_uses().values() for use in per.values())
    p.observe(0, make_state(1), make_statistics(0), LR)
    uses = p.curvature_uses()
    estimated = curvature is CurvatureSource.ESTIMATED
    for name in LAYERS:
        measured = name in LAYERS[:2]
        estimate_b = uses[name][Factor.B].estimate
        assert (estimate_b is not None) == measured and uses[name][Factor.A].estimate is None
        if estimate_b is not None:
            assert estimate_b.mean == pytest.approx(MEASURED_CURVATURE)
        for factor in Factor:
            assert uses[name][factor].estimated == (estimated and measured)
            expected = MEASURED_CURVATURE if estimated and measured else ScoreSettings().curvature_scale
            assert uses[name][factor].value == pytest.approx(expected)


def test_an_aslora_state_saved_before_curvature_was_estimated_loads() -> None:
    p = policy("aslora", score=ScoreSettings(curvature=CurvatureSource.ESTIMATED))
    run(p, range(2))
    saved = p.state_dict()
    del saved["curvature"]
    resumed = policy("aslora", score=ScoreSettings(curvature=CurvatureSource.ESTIMATED))
    resumed.load_state_dict(saved)
    assert resumed.state_dict()["current"] == p.state_dict()["current"]
    assert all(not use.estimated for per in resumed.curvature_uses().values() for use in per.values())
