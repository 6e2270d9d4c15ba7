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
        raise TaskRefusedError(f"the task would take this silo's epsilon past its budget {max_epsilon:g}")


def check_adapter(state: AdapterState) -> None:
    """Raise TaskRefusedError when the downloaded adapter has non-finite values (shapes: on load)."""
    tensors = [t for pair in state.layers.values() for t in (pair.a, pair.b)] + list(state.head.values())
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise TaskRefusedError("the global adapter has non-finite values")
