"""PRV against RDP and Google's dp-accounting PLD over the learning studies' settings (their silos' sampling
rates, steps and target epsilons): the epsilon each gives at RDP's sigma, and the sigma each needs.

Run: `PYTHONPATH=. .venv/bin/python -m bench.accountant_grid` (a few minutes on 2 cores); it prints one
line per distinct setting and a summary, and exits non-zero if PRV leaves its stated error of PLD or is
not below RDP anywhere.
"""

from __future__ import annotations

import statistics
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import dp_accounting
from dp_accounting.pld import PLDAccountant

from aslora_core.config import AccountantKind, SimulationSettings
from aslora_core.privacy import PrivacyEvent, epsilon_spent, noise_multiplier_for
from aslora_core.privacy.analysis import PRV_EPS_ERROR
from aslora_core.privacy.planning import expected_sample_rate
from aslora_core.simulation import load_records, partition_records
from aslora_core.tasks import make_task
from bench.plans import PLANS

GRID_PLANS = ("learning-sst2", "learning-bbc", "learning-horizon")
PLD_DISCRETIZATION = 1e-4
"""dp-accounting's PLD grid: its epsilon is an upper bound, pessimistic by about this much per unit."""
SIGMA_TOLERANCE = 1e-3
"""Epsilon tolerance of the sigma searches (both accountants alike)."""


@dataclass(frozen=True)
class Setting:
    """One silo's DP-SGD schedule in a study: sampling rate, steps, target epsilon and delta."""

    sample_rate: float
    steps: int
    epsilon: float
    delta: float


def _silo_rates(settings: SimulationSettings) -> list[float]:
    """Every silo's sampling rate q = min(b, N) / N under the run's data, partition and seed."""
    task = make_task(settings.task)
    train, _ = load_records(task, settings.data, settings.federation.seed)
    parts = partition_records(train.labels, settings.partition, settings.federation.seed)
    return [expected_sample_rate(settings.training.batch_size, len(part)) for part in parts]


def study_settings() -> list[Setting]:
    """The distinct (q, steps, epsilon, delta) of every private run of the learning studies."""
    found: set[Setting] = set()
    rates: dict[tuple[str, str, int, int, float | None, int], list[float]] = {}
    for plan in GRID_PLANS:
        for run in PLANS[plan](Path()):
            privacy = run.settings.privacy
            if privacy.target_epsilon is None:
                continue
            key = (
                str(run.settings.data),
                plan,
                run.settings.federation.seed,
                run.settings.partition.silos,
                run.settings.partition.dirichlet_alpha,
                run.settings.training.batch_size,
            )
            if key not in rates:
                rates[key] = _silo_rates(run.settings)
            steps = run.settings.federation.rounds * run.settings.training.local_steps
            found.update(Setting(q, steps, privacy.target_epsilon, privacy.delta) for q in rates[key])
    return sorted(found, key=lambda s: (s.epsilon, s.steps, s.sample_rate))


def pld_epsilon(setting: Setting, sigma: float) -> float:
    """dp-accounting's PLD epsilon of `setting`'s steps at `sigma`."""
    accountant = PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    event = dp_accounting.PoissonSampledDpEvent(setting.sample_rate, dp_accounting.GaussianDpEvent(sigma))
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, setting.steps))
    return float(accountant.get_epsilon(setting.delta))


@dataclass(frozen=True)
class Comparison:
    """One setting: RDP's sigma, each accountant's epsilon there, and PRV's sigma for the target."""

    setting: Setting
    rdp_sigma: float
    rdp_epsilon: float
    prv_epsilon: float
    pld_epsilon: float
    prv_sigma: float

    @property
    def within_error(self) -> bool:
        """Opacus' PRV reports its estimate plus its stated error `eps_error`, the estimate being within
        `eps_error` of the true epsilon, so it lies between the truth and the truth plus twice that; PLD
        bounds the truth from above, within its grid's pessimism (allowed `eps_error` too)."""
        return -PRV_EPS_ERROR <= self.prv_epsilon - self.pld_epsilon <= 2 * PRV_EPS_ERROR

    @property
    def sigma_saving(self) -> float:
        """The fraction of RDP's sigma that PRV does without at the target epsilon."""
        return 1.0 - self.prv_sigma / self.rdp_sigma


def compare(setting: Setting) -> Comparison:
    """Every accountant on one setting."""
    q, steps, target, delta = setting.sample_rate, setting.steps, setting.epsilon, setting.delta
    rdp_sigma = noise_multiplier_for(
        target, delta, q, steps, AccountantKind.RDP, epsilon_tolerance=SIGMA_TOLERANCE
    )
    event = [PrivacyEvent(rdp_sigma, q, steps)]
    return Comparison(
        setting=setting,
        rdp_sigma=rdp_sigma,
        rdp_epsilon=epsilon_spent(event, delta, AccountantKind.RDP),
        prv_epsilon=epsilon_spent(event, delta, AccountantKind.PRV),
        pld_epsilon=pld_epsilon(setting, rdp_sigma),
        prv_sigma=noise_multiplier_for(
            target, delta, q, steps, AccountantKind.PRV, epsilon_tolerance=SIGMA_TOLERANCE
        ),
    )


def main() -> None:
    """Print the comparison of every setting and the sigma PRV saves at each target epsilon."""
    # Opacus' PRV accountant sizes its domain with an RDP bound that warns at the largest order.
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
    comparisons = [compare(setting) for setting in study_settings()]
    print("target  steps  q       sigma_rdp  eps_rdp  eps_prv  eps_pld  prv-pld  sigma_prv  saving")
    for c in comparisons:
        s = c.setting
        print(
            f"{s.epsilon:<7g} {s.steps:<6d} {s.sample_rate:<7.4f} {c.rdp_sigma:<10.4f} {c.rdp_epsilon:<8.4f} "
            f"{c.prv_epsilon:<8.4f} {c.pld_epsilon:<8.4f} {c.prv_epsilon - c.pld_epsilon:<+8.4f} "
            f"{c.prv_sigma:<10.4f} {c.sigma_saving:.1%}"
        )
    for target in sorted({c.setting.epsilon for c in comparisons}):
        savings = [c.sigma_saving for c in comparisons if c.setting.epsilon == target]
        print(
            f"epsilon {target:g}: PRV needs {min(savings):.1%} to {max(savings):.1%} less sigma than RDP "
            f"(median {statistics.median(savings):.1%}, {len(savings)} settings)"
        )
    outside = [c for c in comparisons if not c.within_error]
    looser = [c for c in comparisons if not c.prv_epsilon < c.rdp_epsilon]
    print(f"PRV outside its stated error of PLD: {len(outside)}; PRV not below RDP: {len(looser)}")
    if outside or looser:
        sys.exit(1)


if __name__ == "__main__":
    main()
