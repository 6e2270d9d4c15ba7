"""Recent epsilons are kept: a figure asked for again is the same float, and a budget check followed by the
charge it lets through costs one PRV evaluation, at the coordinator and at a silo."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opacus.accountants import create_accountant
from threadpoolctl import threadpool_limits

from aslora_coordinator.ledger import PrivacyLedger
from aslora_core.config import AccountantKind, PrivacySettings
from aslora_core.factor_choice import FactorChoice
from aslora_core.privacy import (
    FULL_BATCH,
    Mechanism,
    PrivacyAccountant,
    PrivacyEvent,
    analysis,
    epsilon_spent,
)
from aslora_core.privacy.analysis import EPSILON_CACHE_SIZE
from aslora_core.privacy.prv import prv_epsilon
from aslora_rpc.messages import Task
from aslora_rpc.transfer import PayloadInfo
from aslora_silo.config import SiloPrivacy
from aslora_silo.ledger import SiloLedger
from aslora_silo.task_checks import check_task
from tests.grpc.helpers import small_run_plan

DELTA = 1e-5
SIGMA = 1.0
STEPS = 4
ROUNDS = 3
SILO_RATES = (0.05, 0.1, 0.2)
"""One sampling rate per silo: every silo's history is its own, as with silos of different sizes."""
EVALUATION_SIGMA = 20.0
RANDOM_HISTORIES = 6
# Opacus' domain bound warns where its orders stop short of the best one (large sigma, an evaluation
# release): the figures are compared all the same.
pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")

HISTORIES = (
    (PrivacyEvent(SIGMA, 0.1, STEPS),),
    (PrivacyEvent(SIGMA, 0.1, STEPS), PrivacyEvent(0.8, 0.05, 2 * STEPS)),
    (PrivacyEvent(SIGMA, 0.1, STEPS), PrivacyEvent(EVALUATION_SIGMA, FULL_BATCH, 1, Mechanism.EVALUATION)),
)


class EvaluationCounter:
    """Counts the calls of the stateless PRV function: one per epsilon actually evaluated."""

    def __init__(self) -> None:
        self.calls = 0
        self._evaluate = prv_epsilon

    def __call__(self, *args: Any, **kwargs: Any) -> float:
        self.calls += 1
        return self._evaluate(*args, **kwargs)


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> Iterator[EvaluationCounter]:
    """A counter of PRV evaluations, over an emptied cache (emptied again afterwards)."""
    analysis._composed_epsilon.cache_clear()
    counter = EvaluationCounter()
    monkeypatch.setattr(analysis, "prv_epsilon", counter)
    yield counter
    analysis._composed_epsilon.cache_clear()


def _opacus_epsilon(history: Sequence[PrivacyEvent], delta: float, kind: AccountantKind) -> float:
    """What Opacus' own accountant (no cache anywhere) reports for the steps taken at each (sigma, q) in
    sorted order, with the options and the one BLAS thread `epsilon_spent` uses."""
    accountant = create_accountant(mechanism=kind.value)
    accountant.history = list(analysis._composed(history))
    with (
        np.errstate(divide="ignore"),
        threadpool_limits(limits=analysis.ACCOUNTING_BLAS_THREADS, user_api="blas"),
    ):
        return float(accountant.get_epsilon(delta=delta, **analysis._accountant_options(kind, delta)))


@pytest.mark.parametrize("kind", list(AccountantKind))
@pytest.mark.parametrize("history", HISTORIES)
def test_a_kept_epsilon_is_opacus_own_bit_for_bit(
    history: tuple[PrivacyEvent, ...], kind: AccountantKind, evaluations: EvaluationCounter
) -> None:
    first = epsilon_spent(history, DELTA, kind)
    again = epsilon_spent(list(history), DELTA, kind)
    assert first == again == _opacus_epsilon(history, DELTA, kind)
    assert analysis._composed_epsilon.cache_info().hits == 1


def test_prv_epsilon_is_opacus_own_bit_for_bit_over_random_histories() -> None:
    generator = random.Random(0)
    for _ in range(RANDOM_HISTORIES):
        history = [
            PrivacyEvent(
                noise_multiplier=generator.uniform(0.5, 3.0),
                sample_rate=generator.uniform(1e-3, 0.5),
                steps=generator.randint(1, 200),
            )
            for _ in range(generator.randint(1, 2))
        ]
        delta = 10 ** generator.uniform(-7, -4)
        assert epsilon_spent(history, delta, AccountantKind.PRV) == _opacus_epsilon(
            history, delta, AccountantKind.PRV
        )


def test_the_run_and_mechanism_of_an_event_do_not_split_the_kept_figures(
    evaluations: EvaluationCounter,
) -> None:
    tagged = PrivacyAccountant(AccountantKind.PRV, [PrivacyEvent(SIGMA, 0.1, STEPS, run_id="a")])
    untagged = PrivacyAccountant(AccountantKind.PRV, [PrivacyEvent(SIGMA, 0.1, STEPS)])
    assert tagged.epsilon(DELTA) == untagged.epsilon(DELTA)
    release = PrivacyAccountant(AccountantKind.PRV)
    release.record_evaluation(EVALUATION_SIGMA)
    full_batch_step = PrivacyAccountant(AccountantKind.PRV)
    full_batch_step.record(EVALUATION_SIGMA, FULL_BATCH)
    assert release.epsilon(DELTA) == full_batch_step.epsilon(DELTA)
    assert evaluations.calls == 2


def test_the_cache_is_bounded(evaluations: EvaluationCounter) -> None:
    for steps in range(1, EPSILON_CACHE_SIZE + 2):
        epsilon_spent([PrivacyEvent(SIGMA, 0.1, steps)], DELTA, AccountantKind.RDP)
    assert analysis._composed_epsilon.cache_info().currsize == EPSILON_CACHE_SIZE


def test_the_coordinator_evaluates_each_silo_once_a_round(evaluations: EvaluationCounter) -> None:
    ledger = PrivacyLedger(PrivacySettings(noise_multiplier=SIGMA), budget=1e6)
    silos = [f"silo-{index}" for index in range(len(SILO_RATES))]
    for _ in range(ROUNDS):
        # As a round goes: each task is checked against the budget, charged when handed out, and the
        # recomputation read for the metrics and the run's progress.
        for silo, rate in zip(silos, SILO_RATES, strict=True):
            assert not ledger.would_exceed(silo, SIGMA, rate, STEPS)
        for silo, rate in zip(silos, SILO_RATES, strict=True):
            ledger.charge(silo, SIGMA, rate, STEPS)
        recomputed = [ledger.recomputed(silo) for silo in silos]
        assert [entry.epsilon_recomputed for entry in ledger.entries(silos)] == recomputed
    assert evaluations.calls == ROUNDS * len(silos)


def _task(round_index: int, rate: float) -> Task:
    return Task(
        task_id=f"t{round_index}",
        round_index=round_index,
        selection={"layer.0": FactorChoice.B},
        noise_multiplier=SIGMA,
        sample_rate=rate,
        local_steps=STEPS,
        adapter=PayloadInfo(0, bytes(32)),
        seconds_to_deadline=60.0,
    )


def test_a_silo_evaluates_once_a_round(tmp_path: Path, evaluations: EvaluationCounter) -> None:
    plan = small_run_plan(rounds=ROUNDS, local_steps=STEPS, test_mode=False)
    privacy = SiloPrivacy(max_epsilon=1e6, max_run_epsilon=1e6)
    ledger = SiloLedger(tmp_path, privacy)
    ledger.begin_run(plan.run_id)
    rate = SILO_RATES[0]
    for round_index in range(ROUNDS):
        # As a silo's round goes: both budget checks, the charge, then the epsilon it reports and logs.
        check_task(
            _task(round_index, rate),
            plan=plan,
            sample_rate=rate,
            accountant=ledger.snapshot(),
            privacy=privacy,
        )
        ledger.record(SIGMA, rate, STEPS)
        assert ledger.spent() == ledger.spent_in_run(plan.run_id)
    assert evaluations.calls == ROUNDS


def test_an_evaluation_release_checked_then_charged_is_evaluated_once(
    tmp_path: Path, evaluations: EvaluationCounter
) -> None:
    privacy = SiloPrivacy(max_epsilon=1e6)
    ledger = SiloLedger(tmp_path, privacy)
    ledger.begin_run("run")
    ledger.record(SIGMA, SILO_RATES[0], STEPS)
    spent = ledger.snapshot()
    assert not spent.would_exceed(
        EVALUATION_SIGMA,
        FULL_BATCH,
        1,
        privacy.max_delta,
        privacy.max_epsilon,
        mechanism=Mechanism.EVALUATION,
        run_id="run",
    )
    ledger.record_evaluation(EVALUATION_SIGMA)
    ledger.spent()
    assert evaluations.calls == 1
