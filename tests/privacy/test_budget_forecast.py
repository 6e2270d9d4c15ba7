"""A silo's forecast of what a run costs it is its own accountant's composition of the run's steps on top
of its ledger, at its own delta; the budget pays one round, the whole run, or neither."""

from __future__ import annotations

import pytest

from aslora_core.config import (
    DEFAULT_ACCOUNTANT,
    AccountantKind,
    FederationSettings,
    PrivacySettings,
    TrainingSettings,
)
from aslora_core.privacy import PrivacyAccountant
from aslora_core.privacy.analysis import noise_multiplier_for
from aslora_silo.budget_forecast import BudgetForecast, forecast_budget
from aslora_silo.config import SiloPrivacy

ROUNDS = 5
STEPS = 4
BATCH = 8
RECORDS = 80
RATE = BATCH / RECORDS
SIGMA = 1.2
SILO_DELTA = 1e-6
PLAN_DELTA = 1e-7
TARGET_EPSILON = 3.0
EVALUATION_SIGMA = 5.0


def _forecast(
    max_epsilon: float, spent: PrivacyAccountant, planned: PrivacySettings | None = None
) -> BudgetForecast:
    return forecast_budget(
        FederationSettings(policy="aslora", rounds=ROUNDS),
        TrainingSettings(local_steps=STEPS, batch_size=BATCH),
        planned or PrivacySettings(noise_multiplier=SIGMA),
        dataset_size=RECORDS,
        privacy=SiloPrivacy(max_epsilon=max_epsilon, max_delta=SILO_DELTA),
        spent=spent,
    )


def _composed(spent: PrivacyAccountant, sigma: float, steps: int) -> float:
    accountant = PrivacyAccountant(spent.kind, spent.history)
    accountant.record(sigma, RATE, steps)
    return accountant.epsilon(SILO_DELTA)


def test_the_forecast_is_the_accountants_composition_on_top_of_the_ledger() -> None:
    spent = PrivacyAccountant(AccountantKind.RDP)
    spent.record(0.9, 0.05, 30)
    forecast = _forecast(100.0, spent)
    assert forecast.noise_multiplier == SIGMA and forecast.sample_rate == RATE
    assert forecast.epsilon_before == spent.epsilon(SILO_DELTA)
    assert forecast.epsilon_after_round == _composed(spent, SIGMA, STEPS)
    assert forecast.epsilon_after_run == _composed(spent, SIGMA, ROUNDS * STEPS)
    assert forecast.round_cost == forecast.epsilon_after_round - forecast.epsilon_before > 0


def test_a_target_epsilon_is_planned_as_the_coordinator_plans_it() -> None:
    planned = PrivacySettings(target_epsilon=TARGET_EPSILON, delta=PLAN_DELTA)
    forecast = _forecast(100.0, PrivacyAccountant(), planned)
    expected = noise_multiplier_for(TARGET_EPSILON, PLAN_DELTA, RATE, ROUNDS * STEPS, DEFAULT_ACCOUNTANT)
    assert forecast.noise_multiplier == expected


def test_the_budget_pays_the_run_one_round_or_neither() -> None:
    empty = PrivacyAccountant()
    whole = _forecast(100.0, empty)
    assert whole.pays_one_round and whole.pays_run
    between = (whole.epsilon_after_round + whole.epsilon_after_run) / 2
    partly = _forecast(between, empty)
    assert partly.pays_one_round and not partly.pays_run
    short = _forecast(whole.epsilon_after_round / 2, empty)
    assert not short.pays_one_round
    assert short.round_cost == pytest.approx(whole.epsilon_after_round)


def test_a_plan_without_noise_costs_an_infinite_epsilon() -> None:
    forecast = _forecast(100.0, PrivacyAccountant(), PrivacySettings(noise_multiplier=0.0))
    assert not forecast.pays_one_round


def test_the_forecast_counts_the_evaluation_releases_the_plan_asks_of_the_silo() -> None:
    """Five rounds evaluated every second round and after the last: three releases, composed into the
    run's epsilon (what max_run_epsilon limits) and the lifetime forecast; none without noise."""
    spent = PrivacyAccountant(AccountantKind.RDP)
    spent.record(0.9, 0.05, 30)
    forecast = forecast_budget(
        FederationSettings(policy="aslora", rounds=ROUNDS, evaluation_interval=2, silo_evaluation=True),
        TrainingSettings(local_steps=STEPS, batch_size=BATCH),
        PrivacySettings(noise_multiplier=SIGMA),
        dataset_size=RECORDS,
        privacy=SiloPrivacy(max_epsilon=100.0, max_delta=SILO_DELTA),
        spent=spent,
        evaluation_noise=EVALUATION_SIGMA,
    )
    run = PrivacyAccountant(spent.kind)
    run.record(SIGMA, RATE, ROUNDS * STEPS)
    for _ in range(3):
        run.record_evaluation(EVALUATION_SIGMA)
    assert forecast.evaluation_releases == 3
    assert forecast.run_epsilon == pytest.approx(run.epsilon(SILO_DELTA))
    assert forecast.run_epsilon > _forecast(100.0, PrivacyAccountant()).run_epsilon
    after_run = PrivacyAccountant(spent.kind, spent.history + run.history)
    assert forecast.epsilon_after_run == pytest.approx(after_run.epsilon(SILO_DELTA))
    assert forecast.epsilon_after_round == _composed(spent, SIGMA, STEPS)
    assert "3 evaluation releases" in forecast.summary()
    unnoised = forecast_budget(
        FederationSettings(policy="aslora", rounds=ROUNDS, silo_evaluation=True),
        TrainingSettings(local_steps=STEPS, batch_size=BATCH),
        PrivacySettings(noise_multiplier=SIGMA),
        dataset_size=RECORDS,
        privacy=SiloPrivacy(max_epsilon=100.0, max_delta=SILO_DELTA),
        spent=spent,
        evaluation_noise=0.0,
    )
    assert unnoised.evaluation_releases == 0
