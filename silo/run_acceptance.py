"""Whether this silo takes part in a run, decided from the run's plan before the silo is counted: its own
base model and task, the policies it accepts, its privacy settings, and the run's forecast epsilon against
its per-run limit and its lifetime budget (its own accountant over every run in its ledger)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aslora_core.config import TaskName
from aslora_core.privacy import PrivacyAccountant
from aslora_core.privacy.planning import expected_sample_rate, plan_noise_multipliers
from aslora_rpc.messages import RunPlan
from aslora_silo.config import AcceptanceRules, SiloPrivacy
from aslora_silo.task_checks import PlanRefusedError, check_plan


class RunDeclinedError(Exception):
    """The silo will not take part in the run; the message says which rule the plan breaks (it is sent
    to the coordinator, where the operator reads it)."""


@dataclass(frozen=True)
class RunForecast:
    """What a whole run would cost this silo, at its own delta, if every round gave it a task."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    run_epsilon: float
    """The run's events alone."""
    lifetime_epsilon: float
    """The ledger's events and the run's, composed."""


@dataclass(frozen=True)
class SiloIdentity:
    """What a plan must match of the silo itself: its base model's fingerprint, its task, its record
    count."""

    fingerprint: str
    task: TaskName
    dataset_size: int


def forecast_run(
    plan: RunPlan, privacy: SiloPrivacy, ledger: PrivacyAccountant, dataset_size: int, rounds: int
) -> RunForecast:
    """The epsilon of `rounds` rounds of the run at the silo's delta, alone and on top of the ledger: the
    plan's sigma, or the one the coordinator calibrates to the plan's target (over the whole run) for this
    silo's sampling rate."""
    rate = expected_sample_rate(plan.training.batch_size, dataset_size)
    run_steps = plan.federation.rounds * plan.training.local_steps
    sigma = plan_noise_multipliers(plan.privacy, run_steps, {"silo": rate})["silo"]
    steps = rounds * plan.training.local_steps
    alone = PrivacyAccountant(privacy.accountant)
    alone.record(sigma, rate, steps, plan.run_id)
    with_ledger = PrivacyAccountant(privacy.accountant, ledger.history)
    with_ledger.record(sigma, rate, steps, plan.run_id)
    delta = privacy.max_delta
    return RunForecast(sigma, rate, steps, alone.epsilon(delta), with_ledger.epsilon(delta))


def check_run(
    plan: RunPlan,
    identity: SiloIdentity,
    rules: AcceptanceRules,
    privacy: SiloPrivacy,
    ledger: PrivacyAccountant,
) -> RunForecast:
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
    forecast = forecast_run(plan, privacy, ledger, identity.dataset_size, plan.federation.rounds)
    if privacy.max_run_epsilon is not None and forecast.run_epsilon > privacy.max_run_epsilon:
        raise RunDeclinedError(
            f"the run would cost this silo epsilon {_shown(forecast.run_epsilon)} (sigma "
            f"{forecast.noise_multiplier:.4g}, q {forecast.sample_rate:.4g}, {forecast.steps} steps, at "
            f"delta {privacy.max_delta:g}), above its max_run_epsilon {privacy.max_run_epsilon:g}"
        )
    if forecast.lifetime_epsilon > privacy.max_epsilon and rules.allow_partial_runs:
        one_round = forecast_run(plan, privacy, ledger, identity.dataset_size, rounds=1)
        if one_round.lifetime_epsilon <= privacy.max_epsilon:
            return forecast
        raise RunDeclinedError(
            f"this silo's budget cannot pay one round of the run: a round costs "
            f"{_shown(one_round.run_epsilon)} and would take its lifetime epsilon to "
            f"{_shown(one_round.lifetime_epsilon)}, past max_epsilon {privacy.max_epsilon:g} "
            f"(at delta {privacy.max_delta:g})"
        )
    if forecast.lifetime_epsilon > privacy.max_epsilon:
        spent = ledger.epsilon(privacy.max_delta)
        raise RunDeclinedError(
            f"the run would take this silo's lifetime epsilon from {_shown(spent)} "
            f"to {_shown(forecast.lifetime_epsilon)}, past its budget max_epsilon {privacy.max_epsilon:g} "
            f"(at delta {privacy.max_delta:g})"
        )
    return forecast


def _shown(epsilon: float) -> str:
    return f"{epsilon:.4g}" if math.isfinite(epsilon) else "infinity"
