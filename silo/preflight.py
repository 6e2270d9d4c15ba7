"""The checks a silo makes before it takes part (`aslora silo check`, and `aslora silo run` before it
registers): its model and fingerprint, every data row against the labels, its TLS files and ports, the
coordinator's protocol, and given a run plan, the plan's privacy and what the run costs its budget."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from aslora_core.config import FederationSettings, PrivacySettings, TaskName, TrainingSettings
from aslora_core.fingerprint import FingerprintError, base_model_fingerprint
from aslora_core.privacy import PrivacyAccountant
from aslora_rpc.certificates import Role
from aslora_rpc.endpoints import EndpointError, TlsRequiredError, require_plaintext_allowed
from aslora_rpc.messages import RunPlan
from aslora_rpc.ports import check_port_free
from aslora_rpc.preflight import Failed, Outcome, Passed, PreflightError, attempt, raise_first_failure
from aslora_rpc.tls_check import check_tls_files
from aslora_rpc.tls_probe import speaks_tls
from aslora_silo.budget_forecast import BudgetForecast, evaluation_noise_multiplier, forecast_budget
from aslora_silo.config import SiloConfig
from aslora_silo.rank_devices import check_devices
from aslora_silo.task_checks import PlanRefusedError, check_plan_privacy
from aslora_silo.workspace import load_records

LOGGER = logging.getLogger(__name__)
FINGERPRINT_SHOWN = 16
"""Hex digits of the fingerprint shown (enough to compare it with the coordinator's by eye)."""
BUDGET_FIX = (
    "raise [privacy] max_epsilon in this silo's config (its own decision), or ask the operator for a run "
    "with more noise, fewer steps or fewer rounds"
)


@dataclass(frozen=True)
class PlannedRun:
    """What a run decides that a silo checks before it is counted: the task, the labels, the rounds and
    steps, and the privacy settings."""

    task: TaskName
    label_names: tuple[str, ...]
    federation: FederationSettings
    training: TrainingSettings
    privacy: PrivacySettings

    @classmethod
    def of(cls, plan: RunPlan) -> PlannedRun:
        """The checked part of a run plan as it arrives from the coordinator."""
        return cls(plan.task, plan.label_names, plan.federation, plan.training, plan.privacy)


@dataclass
class SiloChecks:
    """Every check's outcome, in order, and what they found (None where a check failed or did not run)."""

    outcomes: list[Outcome] = field(default_factory=list)
    fingerprint: str | None = None
    dataset_size: int | None = None
    forecast: BudgetForecast | None = None

    @property
    def passed(self) -> bool:
        """Whether no check failed."""
        return not any(isinstance(outcome, Failed) for outcome in self.outcomes)


def check_silo(
    config: SiloConfig,
    *,
    insecure: bool,
    spent: PrivacyAccountant,
    state_dir: Path,
    plan: PlannedRun | None = None,
) -> SiloChecks:
    """Run every check on `config` (its own config file has been read already) with this silo's ledger
    `spent` and state folder (where its evaluation split key is); a check that depends on a failed one is
    left out. Nothing is sent to the coordinator."""
    checks = SiloChecks()

    def model() -> Passed:
        if not config.model_path.is_dir():
            raise FingerprintError(f"model_path {config.model_path} is not a folder")
        checks.fingerprint = base_model_fingerprint(config.model_path)
        return Passed("model", f"{config.model_path}, fingerprint {checks.fingerprint[:FINGERPRINT_SHOWN]}")

    def data() -> Passed:
        labels = plan.label_names if plan is not None and plan.task.has_classes else None
        records = load_records(config.task, config.data, labels, state_dir)
        checks.dataset_size = len(records)
        against = f"the run's labels {list(labels)}" if labels else "the labels it names itself"
        small_delta = config.privacy.max_delta <= 1 / checks.dataset_size
        detail = (
            f"{checks.dataset_size} records of {config.data.train_path}, every row read against {against}"
        )
        if not small_delta:
            detail += f"; max_delta {config.privacy.max_delta:g} is above 1/N (keep delta well below 1/N)"
        return Passed("data", detail, warning=not small_delta)

    checks.outcomes += [attempt("model", model), attempt("data", data)]
    checks.outcomes.append(attempt("devices", lambda: _devices(config)))
    checks.outcomes += [
        attempt("tls", lambda: _tls(config, insecure)),
        attempt("ports", lambda: _ports(config)),
        attempt("coordinator", lambda: _coordinator(config, insecure)),
    ]
    if plan is not None:
        checks.outcomes.append(attempt("plan", lambda: _plan(config, plan)))
        if checks.dataset_size is not None:
            size = checks.dataset_size

            def budget() -> Passed:
                evaluates = plan.federation.silo_evaluation and config.answers_evaluation
                checks.forecast = forecast_budget(
                    plan.federation,
                    plan.training,
                    plan.privacy,
                    dataset_size=size,
                    privacy=config.privacy,
                    spent=spent,
                    evaluation_noise=evaluation_noise_multiplier(
                        plan.federation.evaluation_noise_multiplier, config.privacy
                    )
                    if evaluates
                    else None,
                )
                return _budget(checks.forecast)

            checks.outcomes.append(attempt("budget", budget))
        else:
            checks.outcomes.append(Passed("budget", "not forecast: it needs the data's record count", True))
    return checks


def preflight_silo(
    config: SiloConfig, *, insecure: bool, spent: PrivacyAccountant, state_dir: Path
) -> SiloChecks:
    """The checks `aslora silo run` makes before it registers: PreflightError for the first that fails,
    warnings logged."""
    checks = check_silo(config, insecure=insecure, spent=spent, state_dir=state_dir)
    raise_first_failure(checks.outcomes)
    for outcome in checks.outcomes:
        if isinstance(outcome, Passed) and outcome.warning:
            LOGGER.warning("silo %s: %s: %s", config.name, outcome.check, outcome.detail)
    return checks


def check_data_for_run(config: SiloConfig, plan: RunPlan, state_dir: Path) -> Outcome:
    """The data check against a run's labels, made by `aslora silo run` when the run's plan arrives and
    before it registers (its first checks knew no labels): every row must carry one of them."""

    def data() -> Passed:
        labels = plan.label_names if plan.task.has_classes else None
        records = load_records(config.task, config.data, labels, state_dir)
        return Passed("data", f"{len(records)} records, every row read against run {plan.run_id}'s labels")

    return attempt("data", data)


def _devices(config: SiloConfig) -> Passed:
    """The training devices the silo asks for are on this node (docs/operations.md)."""
    check_devices(config.compute.device, config.ranks.devices)
    ranks = config.ranks.devices
    return Passed("devices", f"{ranks} training rank{'s' if ranks > 1 else ''} on {config.compute.device}")


def _tls(config: SiloConfig, insecure: bool) -> Passed:
    connection = config.connection
    if insecure:
        require_plaintext_allowed(connection.coordinator, "the coordinator address")
        return Passed("tls", "plaintext (--insecure): no authentication, loopback only", warning=True)
    if connection.tls is None:
        raise EndpointError("no [tls] table: configure the silo's CA, certificate and key, or --insecure")
    summary = check_tls_files(connection.tls, Role.SILO, config.name)
    detail = f"silo certificate for {summary.name!r} from the CA, valid until {summary.expires:%Y-%m-%d}"
    return Passed("tls", detail + (" (renew it soon)" if summary.renew_soon else ""), summary.renew_soon)


def _ports(config: SiloConfig) -> Passed:
    listeners = [config.health] + ([config.metrics] if config.metrics is not None else [])
    for endpoint in listeners:
        check_port_free(endpoint)
    return Passed("ports", "free: " + ", ".join(str(endpoint) for endpoint in listeners))


def _coordinator(config: SiloConfig, insecure: bool) -> Passed:
    address = config.connection.coordinator
    tls = speaks_tls(address, None if insecure else config.connection.tls)
    if tls is None:
        return Passed("coordinator", f"{address} does not answer now (the silo waits for it)", warning=True)
    if insecure and tls:
        raise TlsRequiredError(f"the coordinator at {address} requires mutual TLS; this silo runs --insecure")
    if not insecure and not tls:
        raise PreflightError(
            Failed(
                "coordinator",
                f"the coordinator at {address} answers in plaintext, this silo in mutual TLS",
                "ask the operator for the TLS address (a coordinator started with --insecure serves "
                "loopback only)",
            )
        )
    return Passed("coordinator", f"{address} answers in {'TLS' if tls else 'plaintext'}")


def _plan(config: SiloConfig, plan: PlannedRun) -> Passed:
    if plan.task is not config.task:
        raise PreflightError(
            Failed(
                "plan",
                f"the run trains the {plan.task.value} task, this silo {config.task.value}",
                "join a run of this silo's task, or change its task setting",
            )
        )
    try:
        check_plan_privacy(plan.privacy, config.privacy)
    except PlanRefusedError as refusal:
        raise PreflightError(
            Failed("plan", str(refusal), "the plan can ask for more privacy, never less: ask the operator")
        ) from refusal
    return Passed(
        "plan",
        f"{plan.task.value}, {plan.federation.rounds} rounds of {plan.training.local_steps} steps, policy "
        f"{plan.federation.policy}: its privacy settings fit this silo's",
    )


def _budget(forecast: BudgetForecast) -> Passed:
    if not forecast.pays_one_round:
        raise PreflightError(
            Failed(
                "budget",
                f"the budget cannot pay one round (a round costs epsilon {forecast.round_cost:.4g}): "
                + forecast.summary(),
                BUDGET_FIX,
            )
        )
    if not forecast.pays_run:
        return Passed(
            "budget",
            "pays one round but not the whole run (the silo declines once its budget is spent): "
            + forecast.summary(),
            warning=True,
        )
    return Passed("budget", "pays the whole run: " + forecast.summary())
