"""What a silo checks before it trains: the plan and task fit its own privacy settings, its data and its
budget. The silo's config is the authority: a plan or a task may ask for more privacy, never less."""

from __future__ import annotations

import math

import torch

from aslora_core.config import PrivacySettings
from aslora_core.factors import AdapterState
from aslora_core.privacy import PrivacyAccountant
from aslora_rpc.messages import RunPlan, Task
from aslora_silo.config import SiloPrivacy

SAMPLE_RATE_TOLERANCE = 1e-12


class TaskRefusedError(Exception):
    """The silo will not run this task; the message says why (it is sent to the coordinator)."""


class RunRefusedError(TaskRefusedError):
    """A refusal that ends this silo's part in the run: it takes no further task of it."""


class BudgetExhaustedError(RunRefusedError):
    """The task would take this silo past its own epsilon budget."""


class PlanRefusedError(RunRefusedError):
    """The run plan would weaken this silo's guarantee."""


class NonPrivateTaskError(RunRefusedError):
    """The task has no noise and this silo does not allow non-private runs."""


def check_plan(plan: RunPlan, privacy: SiloPrivacy) -> None:
    """Raise PlanRefusedError if the plan asks for test-mode noise this silo does not declare, a delta
    above this silo's, or another accountant than this silo's."""
    check_plan_privacy(plan.privacy, privacy)


def check_plan_privacy(planned: PrivacySettings, privacy: SiloPrivacy) -> None:
    """`check_plan` for the privacy settings of a plan (from a run plan, or a run file being checked)."""
    if planned.test_mode and not privacy.test_mode:
        raise PlanRefusedError(
            "the run plan requests test-mode noise (seeded, no privacy guarantee); this silo's config "
            "declares no test mode"
        )
    if planned.delta > privacy.max_delta:
        raise PlanRefusedError(
            f"the run plan's delta {planned.delta:g} is above this silo's max_delta {privacy.max_delta:g}"
        )
    if planned.accountant is not privacy.accountant:
        raise PlanRefusedError(
            f"the run plan accounts with {planned.accountant.value}; this silo with "
            f"{privacy.accountant.value}"
        )


def check_task(
    task: Task,
    *,
    plan: RunPlan,
    sample_rate: float,
    accountant: PrivacyAccountant,
    privacy: SiloPrivacy,
) -> None:
    """Raise TaskRefusedError unless the task matches the plan and this silo's sampling rate, is private
    (or this silo allows non-private runs) and stays within this silo's budget at its own delta. Needs
    neither the model nor the data: a refused task costs no encoding and no model build."""
    if task.local_steps != plan.training.local_steps:
        raise TaskRefusedError(
            f"the task asks {task.local_steps} steps, the run plan {plan.training.local_steps}"
        )
    if not (math.isfinite(task.noise_multiplier) and task.noise_multiplier >= 0):
        raise TaskRefusedError(f"noise multiplier {task.noise_multiplier} is not usable")
    if abs(task.sample_rate - sample_rate) > SAMPLE_RATE_TOLERANCE:
        raise TaskRefusedError(
            f"the coordinator accounts q = {task.sample_rate}, this silo samples at q = {sample_rate}"
        )
    if task.noise_multiplier == 0:
        if not privacy.allow_non_private:
            raise NonPrivateTaskError(
                "the task has noise multiplier 0 (no privacy guarantee); this silo's config does not "
                "allow non-private runs"
            )
        return
    # Planned in the run the ledger charges it to: the history checked is then the one charged next.
    if accountant.would_exceed(
        task.noise_multiplier,
        sample_rate,
        task.local_steps,
        privacy.max_delta,
        privacy.max_epsilon,
        run_id=plan.run_id,
    ):
        raise BudgetExhaustedError(
            f"the task would take this silo's epsilon from {accountant.epsilon(privacy.max_delta):.4g} "
            f"past its own budget {privacy.max_epsilon:g} (at delta {privacy.max_delta:g})"
        )
    in_run = accountant.of_run(plan.run_id)
    if privacy.max_run_epsilon is not None and in_run.would_exceed(
        task.noise_multiplier,
        sample_rate,
        task.local_steps,
        privacy.max_delta,
        privacy.max_run_epsilon,
        run_id=plan.run_id,
    ):
        raise BudgetExhaustedError(
            f"the task would take this run's epsilon from {in_run.epsilon(privacy.max_delta):.4g} past "
            f"this silo's max_run_epsilon {privacy.max_run_epsilon:g} (at delta {privacy.max_delta:g})"
        )


def check_selection(task: Task, layer_names: list[str]) -> None:
    """Raise TaskRefusedError unless the task selects a factor for exactly the model's LoRA layers."""
    if sorted(task.selection) != layer_names:
        raise TaskRefusedError("the task's layers are not the model's LoRA layers")


def check_adapter(state: AdapterState, template: AdapterState) -> None:
    """Raise TaskRefusedError unless the downloaded adapter has the layers, head tensors, shapes, dtypes
    and scaling of this silo's own adapter (`template`), and only finite values."""
    if state.layer_names != template.layer_names or sorted(state.head) != sorted(template.head):
        raise TaskRefusedError("the global adapter's tensors are not those of this silo's model")
    if state.scaling != template.scaling:
        raise TaskRefusedError(f"the global adapter's scaling {state.scaling} is not {template.scaling}")
    pairs = [(state.head[k], template.head[k]) for k in template.head]
    for name, mine in template.layers.items():
        pairs += [(state.layers[name].a, mine.a), (state.layers[name].b, mine.b)]
    for got, want in pairs:
        if got.shape != want.shape or got.dtype != want.dtype:
            raise TaskRefusedError(
                f"the global adapter has a {tuple(got.shape)} {got.dtype} tensor where this silo's model "
                f"has {tuple(want.shape)} {want.dtype}"
            )
        if not bool(torch.isfinite(got).all()):
            raise TaskRefusedError("the global adapter has non-finite values")
