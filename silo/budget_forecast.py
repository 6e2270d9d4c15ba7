"""What a run plan will cost this silo, by its own accountant at its own delta: the noise the
coordinator will plan for it, one round's epsilon, the whole run's (its evaluation releases included),
and whether its budget pays them."""

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
    evaluation_releases: int
    """The evaluation releases the run asks of this silo (0 when it releases none)."""
    delta: float
    budget: float
    epsilon_before: float
    epsilon_after_round: float
    epsilon_after_run: float
    run_epsilon: float
    """The run's steps and evaluation releases alone (what `max_run_epsilon` limits)."""

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
        releases = f" and {self.evaluation_releases} evaluation releases" if self.evaluation_releases else ""
        return (
            f"sigma {self.noise_multiplier:.4g} at q = {self.sample_rate:.4g}, "
            f"{self.steps_per_round} steps a round{releases}: one round takes epsilon from "
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
    evaluation_noise: float | None = None,
) -> BudgetForecast:
    """The forecast for a run of `federation.rounds` rounds of `training.local_steps` steps, noised as
    `plan_privacy` plans it for a silo of `dataset_size` records (the coordinator's planning, at this
    silo's sampling rate), and of one evaluation release at `evaluation_noise` after every round the plan
    evaluates (None: this silo releases none), composed on top of `spent` by this silo's accountant at
    its max_delta. A plan without noise costs an infinite epsilon; a release without noise (test mode
    only) is not budgeted, as at the release itself."""
    rate = expected_sample_rate(training.batch_size, dataset_size)
    total_steps = federation.rounds * training.local_steps
    sigma = plan_noise_multipliers(plan_privacy, total_steps, {"silo": rate})["silo"]
    release_noise = evaluation_noise or 0.0
    releases = [r for r in range(federation.rounds) if release_noise > 0 and federation.evaluates_after(r)]
    after_round = PrivacyAccountant(spent.kind, spent.history)
    after_run = PrivacyAccountant(spent.kind, spent.history)
    run_alone = PrivacyAccountant(spent.kind)
    after_round.record(sigma, rate, training.local_steps)
    for accountant in (after_run, run_alone):
        accountant.record(sigma, rate, total_steps)
    for round_index in releases:
        charged = (after_round, after_run, run_alone) if round_index == 0 else (after_run, run_alone)
        for accountant in charged:
            accountant.record_evaluation(release_noise)
    delta = privacy.max_delta
    return BudgetForecast(
        noise_multiplier=sigma,
        sample_rate=rate,
        steps_per_round=training.local_steps,
        rounds=federation.rounds,
        evaluation_releases=len(releases),
        delta=delta,
        budget=privacy.max_epsilon,
        epsilon_before=spent.epsilon(delta),
        epsilon_after_round=after_round.epsilon(delta),
        epsilon_after_run=after_run.epsilon(delta),
        run_epsilon=run_alone.epsilon(delta),
    )


def forecast_plan(
    plan: RunPlan,
    *,
    dataset_size: int,
    privacy: SiloPrivacy,
    spent: PrivacyAccountant,
    releases_evaluation: bool,
) -> BudgetForecast:
    """`forecast_budget` for a run plan as it arrives from the coordinator, for a silo that answers its
    evaluation tasks (`releases_evaluation`, at the plan's noise raised to this silo's floor) or not."""
    return forecast_budget(
        plan.federation,
        plan.training,
        plan.privacy,
        dataset_size=dataset_size,
        privacy=privacy,
        spent=spent,
        evaluation_noise=evaluation_noise_multiplier(plan.federation.evaluation_noise_multiplier, privacy)
        if releases_evaluation
        else None,
    )


def evaluation_noise_multiplier(asked: float, privacy: SiloPrivacy) -> float:
    """The noise multiplier of an evaluation release: the one asked, raised to this silo's floor."""
    return max(asked, privacy.min_evaluation_noise_multiplier)
