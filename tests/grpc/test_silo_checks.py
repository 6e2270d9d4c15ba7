"""The silo is the authority on its own budget: it refuses tasks that would exceed it, or that do not fit,
and global adapters that are not shaped like its own."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from aslora_core.config import AccountantKind
from aslora_core.factor_choice import FactorChoice
from aslora_core.factors import AdapterState, LayerFactors
from aslora_core.privacy import PrivacyAccountant
from aslora_rpc.messages import Task
from aslora_rpc.transfer import PayloadInfo
from aslora_silo.config import SiloPrivacy
from aslora_silo.task_checks import (
    BudgetExhaustedError,
    NonPrivateTaskError,
    PlanRefusedError,
    TaskRefusedError,
    check_adapter,
    check_plan,
    check_selection,
    check_task,
)
from tests.grpc.helpers import small_run_plan

LAYERS = ["layer.0", "layer.1"]
STEPS = 50
RATE = 0.25
PLAN = small_run_plan(rounds=4, local_steps=STEPS, test_mode=False)


def _task(sigma: float = 1.0, rate: float = RATE) -> Task:
    return Task(
        task_id="t",
        round_index=0,
        selection=dict.fromkeys(LAYERS, FactorChoice.B),
        noise_multiplier=sigma,
        sample_rate=rate,
        local_steps=STEPS,
        adapter=PayloadInfo(0, bytes(32)),
        seconds_to_deadline=60.0,
    )


def _privacy(**overrides: Any) -> SiloPrivacy:
    return SiloPrivacy(**{"max_epsilon": 100.0, **overrides})


def _check(task: Task, accountant: PrivacyAccountant, privacy: SiloPrivacy | None = None) -> None:
    check_task(
        task,
        plan=PLAN,
        sample_rate=RATE,
        accountant=accountant,
        privacy=privacy or _privacy(),
    )


def test_a_task_within_the_budget_is_accepted() -> None:
    _check(_task(sigma=1.0), PrivacyAccountant())


def test_a_task_that_would_exceed_the_silos_budget_is_refused() -> None:
    accountant = PrivacyAccountant()
    accountant.record(1.0, RATE, 3 * STEPS)
    spent = accountant.epsilon(1e-5)
    with pytest.raises(BudgetExhaustedError, match="past its own budget"):
        _check(_task(sigma=1.0), accountant, _privacy(max_epsilon=spent * 1.01))


def test_the_budget_is_checked_at_the_silos_own_delta() -> None:
    accountant = PrivacyAccountant()
    accountant.record(1.0, RATE, 3 * STEPS)
    at_large_delta = accountant.epsilon(1e-3)
    budget = at_large_delta * 1.01
    _check(_task(sigma=1.0), PrivacyAccountant(), _privacy(max_epsilon=budget, max_delta=1e-3))
    with pytest.raises(BudgetExhaustedError, match="at delta 1e-06"):
        _check(_task(sigma=1.0), accountant, _privacy(max_epsilon=budget, max_delta=1e-6))


def test_a_task_for_other_layers_is_refused() -> None:
    check_selection(_task(), LAYERS)
    with pytest.raises(TaskRefusedError, match="not the model's LoRA layers"):
        check_selection(_task(), [*LAYERS, "layer.2"])


def test_a_task_accounted_at_another_sampling_rate_is_refused() -> None:
    with pytest.raises(TaskRefusedError, match="samples at q"):
        _check(_task(rate=RATE / 2), PrivacyAccountant())


def test_a_task_without_noise_is_refused_unless_the_silo_allows_non_private_runs() -> None:
    with pytest.raises(NonPrivateTaskError, match="does not allow non-private runs"):
        _check(_task(sigma=0.0), PrivacyAccountant())
    _check(_task(sigma=0.0), PrivacyAccountant(), _privacy(allow_non_private=True))


@pytest.mark.parametrize(
    ("plan_privacy", "reason"),
    [
        ({"test_mode": True}, "declares no test mode"),
        ({"delta": 1e-4}, "above this silo's max_delta"),
        ({"accountant": AccountantKind.RDP}, "accounts with rdp; this silo with prv"),
    ],
)
def test_a_plan_weakening_the_silos_guarantee_is_refused(plan_privacy: dict[str, Any], reason: str) -> None:
    plan = dataclasses.replace(PLAN, privacy=dataclasses.replace(PLAN.privacy, **plan_privacy))
    with pytest.raises(PlanRefusedError, match=reason):
        check_plan(plan, _privacy())


def test_a_plan_may_ask_for_more_privacy() -> None:
    smaller_delta = dataclasses.replace(PLAN.privacy, delta=1e-9)
    check_plan(dataclasses.replace(PLAN, privacy=smaller_delta), _privacy())
    test_mode = dataclasses.replace(PLAN.privacy, test_mode=True)
    check_plan(dataclasses.replace(PLAN, privacy=test_mode), _privacy(test_mode=True))


def _adapter(rank: int = 4, width: int = 6) -> AdapterState:
    layers = {name: LayerFactors(a=torch.zeros(rank, width), b=torch.zeros(width, rank)) for name in LAYERS}
    return AdapterState(layers=layers, head={"classifier.weight": torch.zeros(2, width)}, scaling=2.0)


def test_an_adapter_shaped_like_the_silos_own_is_accepted() -> None:
    check_adapter(_adapter(), _adapter())


@pytest.mark.parametrize(
    ("downloaded", "reason"),
    [
        (_adapter(rank=8), "tensor where this silo's model has"),
        (dataclasses.replace(_adapter(), head={}), "tensors are not those"),
        (dataclasses.replace(_adapter(), scaling=4.0), "scaling"),
        (
            dataclasses.replace(_adapter(), head={"classifier.weight": torch.full((2, 6), float("nan"))}),
            "non-finite",
        ),
        (
            dataclasses.replace(
                _adapter(), head={"classifier.weight": torch.zeros(2, 6, dtype=torch.float64)}
            ),
            "float64",
        ),
    ],
)
def test_a_downloaded_adapter_that_does_not_fit_is_refused(downloaded: AdapterState, reason: str) -> None:
    with pytest.raises(TaskRefusedError, match=reason):
        check_adapter(downloaded, _adapter())
