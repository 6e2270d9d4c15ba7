"""What a run plan will cost this silo, by its own accountant at its own delta: the noise the
coordinator will plan for it, one round's epsilon, the whole run's, and whether its budget pays them."""

from __future__ import annotations

from dataclasses import dataclass

from aslora_core.config import FederationSettings, PrivacySettings, TrainingSettings
from aslora_core.privacy import PrivacyAccountant
from aslora_core.privacy.planning import expected_sample_rate, plan_noise_multipliers
from aslora_rpc.messages import RunPlan
from aslora_silo.config import SiloPrivacy


@dataclass(frozen=True)
class BudgetForecast:
    """This silo's epsilon (at its own delta) before the run, after its first round and after the whole
    run, if it trains every round: the most a run can cost it."""

    noise_multiplier: float
    sample_rate: float
    steps_per_round: int
    rounds: int
    delta: float
    budget: float
    epsilon_before: float
    epsilon_after_round: float
    epsilon_after_run: float
    run_epsilon: float
    """The run's steps alone (what `max_run_epsilon` limits)."""

    @property
    def round_cost(self) -> float:
        """The epsilon one round adds to what is spent already."""
        return self.epsilon_after_round - self.epsilon_before

    @property
    def pays_one_round(self) -> bool:
        """Whether the budget pays the first round (else this silo cannot take part at all)."""
        return self.epsilon_after_round <= self.budget

    @property
    def pays_run(self) -> bool:
        """Whether the budget pays every round of the run."""
        return self.epsilon_after_run <= self.budget

    def summary(self) -> str:
        """One line: sigma, q, the cost of a round and of the run, against the budget."""
        return (
            f"sigma {self.noise_multiplier:.4g} at q = {self.sample_rate:.4g}, "
            f"{self.steps_per_round} steps a round: one round takes epsilon from "
            f"{self.epsilon_before:.4g} to {self.epsilon_after_round:.4g}, the {self.rounds} rounds to "
            f"{self.epsilon_after_run:.4g} (budget {self.budget:g} at delta {self.delta:g})"
        )


def forecast_budget(
    federation: FederationSettings,
    training: TrainingSettings,
    plan_privacy: PrivacySettings,
    *,
    dataset_size: int,
    privacy: SiloPrivacy,
    spent: PrivacyAccountant,
) -> BudgetForecast:
    """The forecast for a run of `federation.rounds` rounds of `training.local_steps` steps, noised as
    `plan_privacy` plans it for a silo of `dataset_size` records (the coordinator's planning, at this
    silo's sampling rate), composed on top of `spent` by this silo's accountant at its max_delta. A plan
    without noise costs an infinite epsilon."""
    rate = expected_sample_rate(training.batch_size, dataset_size)
    total_steps = federation.rounds * training.local_steps
    sigma = plan_noise_multipliers(plan_privacy, total_steps, {"silo": rate})["silo"]
    after_round = PrivacyAccountant(spent.kind, spent.history)
    after_round.record(sigma, rate, training.local_steps)
    after_run = PrivacyAccountant(spent.kind, spent.history)
    after_run.record(sigma, rate, total_steps)
    run_alone = PrivacyAccountant(spent.kind)
    run_alone.record(sigma, rate, total_steps)
    delta = privacy.max_delta
    return BudgetForecast(
        noise_multiplier=sigma,
        sample_rate=rate,
        steps_per_round=training.local_steps,
        rounds=federation.rounds,
        delta=delta,
        budget=privacy.max_epsilon,
        epsilon_before=spent.epsilon(delta),
        epsilon_after_round=after_round.epsilon(delta),
        epsilon_after_run=after_run.epsilon(delta),
        run_epsilon=run_alone.epsilon(delta),
    )


def forecast_plan(
    plan: RunPlan, *, dataset_size: int, privacy: SiloPrivacy, spent: PrivacyAccountant
) -> BudgetForecast:
    """`forecast_budget` for a run plan as it arrives from the coordinator."""
    return forecast_budget(
        plan.federation,
        plan.training,
        plan.privacy,
        dataset_size=dataset_size,
        privacy=privacy,
        spent=spent,
    )
