"""Whether this silo takes part in a run, decided from the run's plan before the silo is counted: its own
base model and task, the policies it accepts, its privacy settings, and the run's forecast epsilon against
its per-run limit and its lifetime budget (its own accountant over every run in its ledger)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aslora_core.config import TaskName
from aslora_core.privacy import PrivacyAccountant
from aslora_rpc.messages import RunPlan
from aslora_silo.budget_forecast import BudgetForecast, forecast_plan
from aslora_silo.config import AcceptanceRules, SiloPrivacy
from aslora_silo.task_checks import PlanRefusedError, check_plan


class RunDeclinedError(Exception):
    """The silo will not take part in the run; the message says which rule the plan breaks (it is sent
    to the coordinator, where the operator reads it)."""


@dataclass(frozen=True)
class SiloIdentity:
    """What a plan must match of the silo itself: its base model's fingerprint, its task, its record
    count, and whether it answers evaluation tasks at all (its config and data, not the plan)."""

    fingerprint: str
    task: TaskName
    dataset_size: int
    evaluates: bool


def check_run(
    plan: RunPlan,
    identity: SiloIdentity,
    rules: AcceptanceRules,
    privacy: SiloPrivacy,
    ledger: PrivacyAccountant,
) -> BudgetForecast:
    """The run's forecast if this silo takes part; RunDeclinedError naming the rule it breaks otherwise."""
    if plan.base_model_fingerprint != identity.fingerprint:
        raise RunDeclinedError(
            f"the run's base model ({plan.base_model_fingerprint[:12]}...) is not this silo's model "
            f"({identity.fingerprint[:12]}...)"
        )
    if plan.task is not identity.task:
        raise RunDeclinedError(
            f"the run trains the {plan.task.value} task; this silo runs {identity.task.value}"
        )
    policy = plan.federation.policy
    if rules.policies is not None and policy not in rules.policies:
        raise RunDeclinedError(
            f"the run's policy {policy} is not one this silo accepts ({', '.join(rules.policies)})"
        )
    try:
        check_plan(plan, privacy)
    except PlanRefusedError as refusal:
        raise RunDeclinedError(str(refusal)) from refusal
    if plan.privacy.noise_multiplier == 0 and not privacy.allow_non_private:
        raise RunDeclinedError(
            "the run has noise multiplier 0 (no privacy guarantee); this silo's config does not allow "
            "non-private runs"
        )
    forecast = forecast_plan(
        plan,
        dataset_size=identity.dataset_size,
        privacy=privacy,
        spent=ledger,
        releases_evaluation=identity.evaluates and plan.federation.silo_evaluation,
    )
    if privacy.max_run_epsilon is not None and forecast.run_epsilon > privacy.max_run_epsilon:
        raise RunDeclinedError(
            f"the run would cost this silo epsilon {_shown(forecast.run_epsilon)} ({forecast.summary()}), "
            f"above its max_run_epsilon {privacy.max_run_epsilon:g}"
        )
    if not forecast.pays_one_round:
        raise RunDeclinedError(
            f"this silo's budget cannot pay one round of the run: one round costs epsilon "
            f"{_shown(forecast.round_cost)} ({forecast.summary()})"
        )
    if not forecast.pays_run and not rules.allow_partial_runs:
        raise RunDeclinedError(
            f"the run would take this silo's lifetime epsilon from {_shown(forecast.epsilon_before)} to "
            f"{_shown(forecast.epsilon_after_run)}, past its budget max_epsilon {privacy.max_epsilon:g} "
            f"({forecast.summary()})"
        )
    return forecast


def _shown(epsilon: float) -> str:
    return f"{epsilon:.4g}" if math.isfinite(epsilon) else "infinity"
