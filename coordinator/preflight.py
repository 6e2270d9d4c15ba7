"""The checks `aslora coordinator check` makes before a coordinator starts: its TLS files and ports, and
for the run its config holds (or a run file to submit), its model and fingerprint, the evaluation data
against the run's labels, and where results go."""

from __future__ import annotations

from aslora_coordinator.config import CoordinatorConfig, RunConfig, ServiceConfig
from aslora_core.fingerprint import FingerprintError, base_model_fingerprint
from aslora_core.tasks import make_task
from aslora_rpc.certificates import Role
from aslora_rpc.endpoints import EndpointError, require_plaintext_allowed
from aslora_rpc.ports import check_port_free
from aslora_rpc.preflight import Failed, Outcome, Passed, PreflightError, attempt
from aslora_rpc.tls_check import check_tls_files

FINGERPRINT_SHOWN = 16
"""Hex digits of the fingerprint shown (enough to compare it with a silo's by eye)."""


def check_coordinator(config: CoordinatorConfig, *, insecure: bool) -> list[Outcome]:
    """Every check's outcome, in order, for `config` (the config file has been read and validated)."""
    run = [] if config.run is None else check_run_config(config.run)
    return [
        *run,
        attempt("tls", lambda: _tls(config.service, insecure)),
        attempt("ports", lambda: _ports(config.service)),
    ]


def check_run_config(config: RunConfig) -> list[Outcome]:
    """The checks of one run's settings: its model, and its evaluation data against its labels."""
    return [
        attempt("run", lambda: _run(config)),
        attempt("model", lambda: _model(config)),
        attempt("evaluation", lambda: _evaluation(config)),
    ]


def _run(config: RunConfig) -> Passed:
    privacy = config.privacy
    noise = (
        f"noise multiplier {privacy.noise_multiplier:g}"
        if privacy.noise_multiplier is not None
        else f"sigma planned per silo for epsilon {privacy.target_epsilon:g}"
    )
    return Passed(
        "run",
        f"{config.task.value}, policy {config.federation.policy}, {config.federation.rounds} rounds of "
        f"{config.training.local_steps} steps, {noise} at delta {privacy.delta:g} "
        f"({privacy.accountant.value})",
        warning=not privacy.private or privacy.test_mode,
    )


def _model(config: RunConfig) -> Passed:
    if not config.model_path.is_dir():
        raise FingerprintError(f"model_path {config.model_path} is not a folder")
    fingerprint = base_model_fingerprint(config.model_path)
    return Passed("model", f"{config.model_path}, fingerprint {fingerprint[:FINGERPRINT_SHOWN]}")


def _evaluation(config: RunConfig) -> Passed:
    evaluation = config.evaluation
    if evaluation is None or evaluation.data_path is None:
        if config.federation.silo_evaluation:
            return Passed("evaluation", "at the silos only (no evaluation data at the coordinator)")
        return Passed(
            "evaluation", "no evaluation data and none at the silos: the run is not evaluated", True
        )
    labels = config.label_names or None
    records = make_task(config.task).load_records(evaluation.data_path, evaluation.fields, labels)
    results = evaluation.results_path
    if results is not None and not results.parent.is_dir():
        raise PreflightError(
            Failed(
                "evaluation",
                f"results_path {results}: the folder {results.parent} does not exist",
                "create the folder, or name another results_path",
            )
        )
    against = f" against the labels {list(labels)}" if labels else ""
    return Passed("evaluation", f"{len(records)} records of {evaluation.data_path}, every row read{against}")


def _tls(config: ServiceConfig, insecure: bool) -> Passed:
    if insecure:
        require_plaintext_allowed(config.server.listen, "the listen address")
        return Passed("tls", "plaintext (--insecure): no authentication, loopback only", warning=True)
    if config.server.tls is None:
        raise EndpointError("no [tls] table: configure the coordinator's CA, certificate and key")
    summary = check_tls_files(config.server.tls, Role.COORDINATOR)
    detail = f"coordinator certificate {summary.name!r} from the CA, valid until {summary.expires:%Y-%m-%d}"
    return Passed("tls", detail + (" (renew it soon)" if summary.renew_soon else ""), summary.renew_soon)


def _ports(config: ServiceConfig) -> Passed:
    server = config.server
    listeners = [server.listen, server.health] + ([server.metrics] if server.metrics is not None else [])
    for endpoint in listeners:
        check_port_free(endpoint)
    return Passed("ports", "free: " + ", ".join(str(endpoint) for endpoint in listeners))
