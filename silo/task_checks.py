"""What a silo checks before it trains: the task fits its plan, its data and its own privacy budget."""

from __future__ import annotations

import math

import torch

from aslora_core.factors import AdapterState
from aslora_core.privacy import PrivacyAccountant
from aslora_rpc.messages import RunPlan, Task

SAMPLE_RATE_TOLERANCE = 1e-12


class TaskRefusedError(Exception):
    """The silo will not run this task; the message says why (it is sent to the coordinator)."""


class BudgetExhaustedError(TaskRefusedError):
    """The task would take this silo past its own epsilon budget: it takes no further task in the run."""


def check_task(
    task: Task,
    *,
    plan: RunPlan,
    layer_names: list[str],
    sample_rate: float,
    accountant: PrivacyAccountant,
    max_epsilon: float | None,
) -> None:
    """Raise TaskRefusedError unless the task matches the plan and this silo, and stays within its budget."""
    if sorted(task.selection) != layer_names:
        raise TaskRefusedError("the task's layers are not the model's LoRA layers")
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
    if max_epsilon is not None and accountant.would_exceed(
        task.noise_multiplier, sample_rate, task.local_steps, plan.privacy.delta, max_epsilon
    ):
        raise BudgetExhaustedError(
            f"the task would take this silo's epsilon from {accountant.epsilon(plan.privacy.delta):.4g} "
            f"past its own budget {max_epsilon:g}"
        )


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
