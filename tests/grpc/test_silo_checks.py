"""The silo is the authority on its own budget: it refuses tasks that would exceed it, or that do not fit,
and global adapters that are not shaped like its own."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aslora_core.factors import AdapterState, FactorChoice, LayerFactors
from aslora_core.privacy import PrivacyAccountant
from aslora_rpc.messages import Task
from aslora_rpc.transfer import PayloadInfo
from aslora_silo.task_checks import BudgetExhaustedError, TaskRefusedError, check_adapter, check_task
from tests.grpc.helpers import small_run_plan

LAYERS = ["layer.0", "layer.1"]
STEPS = 50
RATE = 0.25


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


def _check(task: Task, accountant: PrivacyAccountant, max_epsilon: float | None) -> None:
    check_task(
        task,
        plan=small_run_plan(rounds=4, local_steps=STEPS, secure_noise=True),
        layer_names=LAYERS,
        sample_rate=RATE,
        accountant=accountant,
        max_epsilon=max_epsilon,
    )


def test_a_task_within_the_budget_is_accepted() -> None:
    _check(_task(sigma=1.0), PrivacyAccountant(), max_epsilon=100.0)


def test_a_task_that_would_exceed_the_silos_budget_is_refused() -> None:
    accountant = PrivacyAccountant()
    accountant.record(1.0, RATE, 3 * STEPS)
    spent = accountant.epsilon(1e-5)
    with pytest.raises(BudgetExhaustedError, match="past its own budget"):
        _check(_task(sigma=1.0), accountant, max_epsilon=spent * 1.01)


def test_a_task_accounted_at_another_sampling_rate_is_refused() -> None:
    with pytest.raises(TaskRefusedError, match="samples at q"):
        _check(_task(rate=RATE / 2), PrivacyAccountant(), max_epsilon=None)


def test_a_non_private_task_is_refused_by_a_silo_with_a_budget() -> None:
    with pytest.raises(TaskRefusedError, match="past its own budget"):
        _check(_task(sigma=0.0), PrivacyAccountant(), max_epsilon=100.0)


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
