"""Read `aslora coordinator serve --config FILE` into a CoordinatorConfig, and a submitted run file into a
RunConfig (see docs/operations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aslora_coordinator.config import (
    DEFAULT_MAX_WORKERS,
    CoordinatorConfig,
    EvaluationSettings,
    RoundSettings,
    RunConfig,
    SecuritySettings,
    ServerSettings,
    ServiceConfig,
    TransportSettings,
)
from aslora_core.config import (
    DEFAULT_TASK,
    ConfigError,
    FederationSettings,
    LoraSettings,
    PrivacySettings,
    RecordFields,
    ScoreSettings,
    TaskName,
    TrainingSettings,
)
from aslora_rpc.certificates import CA_CERT_FILE, REVOKED_FILE
from aslora_rpc.config_file import (
    Table,
    read_endpoint,
    read_listener,
    read_optional_listener,
    read_tls,
    read_toml_file,
    read_toml_text,
)
from aslora_rpc.secure_aggregation.context import MIN_THRESHOLD
from aslora_rpc.settings_file import read_settings

DEFAULT_LISTEN = "0.0.0.0:7443"
DEFAULT_HEALTH_LISTEN = "0.0.0.0:7444"


RUN_KEYS = ("model_path", "task", "labels", "federation", "lora", "privacy", "training", "evaluation")
"""The top-level keys and tables of a run; the rest of a coordinator's config file belongs to the service."""


def load_coordinator_config(path: Path) -> CoordinatorConfig:
    """Parse and validate the coordinator's config file: the service's tables, and the run it holds (when it
    has a model_path or a run table); ConfigError names the offending key."""
    values = read_toml_file(path)
    base = path.absolute().parent
    run_values = {key: values[key] for key in RUN_KEYS if key in values}
    service_values = {key: value for key, value in values.items() if key not in RUN_KEYS}
    top = Table(service_values, str(path), base=base)
    service = ServiceConfig(
        server=_server(top),
        transport=_transport(top.table("transport")),
        security=_security(top.table("security")),
    )
    top.finish()
    run = parse_run_config(run_values, str(path), base) if run_values else None
    if run is not None:
        service.security.check_run(run.federation.secure_aggregation)
    return CoordinatorConfig(service=service, run=run, run_values=run_values, base_dir=base)


def parse_run_config(values: dict[str, Any], source: str, base: Path | None) -> RunConfig:
    """A run's settings from its TOML keys (a submitted run file, or the run part of a coordinator's
    config), relative paths resolved against `base`; ConfigError names the offending key, and any key that
    is not a run's."""
    top = Table(values, source, base=base)
    federation, rounds = _federation(top.table("federation"))
    privacy, budget = _privacy(top.table("privacy"))
    task = top.parse("task", TaskName, DEFAULT_TASK.value)
    config = RunConfig(
        model_path=top.path("model_path"),
        task=task,
        label_names=top.strings("labels") if task.has_classes or top.has("labels") else (),
        federation=federation,
        rounds=rounds,
        lora=_lora(top.table("lora")),
        privacy=privacy,
        privacy_budget=budget,
        training=_training(top.table("training")),
        evaluation=_evaluation(top.optional_table("evaluation")),
    )
    top.finish()
    if config.federation.secure_aggregation and config.rounds.min_silos < MIN_THRESHOLD:
        raise ConfigError(
            f"[federation] secure_aggregation needs min_silos >= {MIN_THRESHOLD}: the sum of one silo's "
            f"update is that update (min_silos = {config.rounds.min_silos})"
        )
    texts = config.lora.head_label_texts
    if texts and len(texts) != len(config.label_names):
        raise ConfigError(f"[lora] head_label_texts: {len(texts)} texts for {len(config.label_names)} labels")
    return config


def load_run_file(path: Path) -> RunConfig:
    """A run file (what `aslora coordinator submit` sends), or the run a coordinator's config holds;
    relative paths resolved against its folder. ConfigError when it holds no run."""
    values = read_toml_file(path)
    run_values = {key: values[key] for key in RUN_KEYS if key in values}
    if not run_values:
        raise ConfigError(f"{path} holds no run: it needs model_path and the run's tables")
    return parse_run_config(run_values, str(path), path.absolute().parent)


def parse_run_text(text: str, source: str, base: Path | None) -> tuple[RunConfig, dict[str, Any]]:
    """A submitted run file's settings (relative paths resolved against `base`), and its keys as read
    (what the run queue keeps)."""
    values = read_toml_text(text, source)
    return parse_run_config(values, source, base), values


def _server(top: Table) -> ServerSettings:
    server = top.table("server")
    settings = ServerSettings(
        listen=read_endpoint(server, "listen", DEFAULT_LISTEN),
        max_workers=server.integer("max_workers", DEFAULT_MAX_WORKERS),
        max_wait_seconds=server.number("max_wait_seconds", ServerSettings.max_wait_seconds),
        linger_seconds=server.optional_number("linger_seconds"),
        port_file=server.optional_path("port_file"),
        health=read_listener(top, "health", DEFAULT_HEALTH_LISTEN),
        metrics=read_optional_listener(top, "metrics"),
        tls=read_tls(top),
    )
    server.finish()
    return settings


def _federation(table: Table) -> tuple[FederationSettings, RoundSettings]:
    """The core federation settings, and the round-staffing keys of the same table."""
    score = table.table("score")
    score_settings = read_settings(score, ScoreSettings)
    score.finish()
    rounds = read_settings(table, RoundSettings)
    settings = read_settings(table, FederationSettings, score=score_settings)
    table.finish()
    return settings, rounds


def _lora(table: Table) -> LoraSettings:
    settings = read_settings(table, LoraSettings)
    table.finish()
    return settings


def _privacy(table: Table) -> tuple[PrivacySettings, float | None]:
    settings = read_settings(table, PrivacySettings)
    budget = table.optional_number("max_epsilon")
    table.finish()
    return settings, budget if budget is not None else settings.target_epsilon


def _training(table: Table) -> TrainingSettings:
    settings = read_settings(table, TrainingSettings)
    table.finish()
    return settings


def _transport(table: Table) -> TransportSettings:
    settings = read_settings(table, TransportSettings)
    table.finish()
    return settings


def _evaluation(table: Table | None) -> EvaluationSettings | None:
    if table is None:
        return None
    settings = read_settings(table, EvaluationSettings, fields=read_settings(table, RecordFields))
    table.finish()
    return settings


def _security(table: Table) -> SecuritySettings:
    settings = read_settings(table, SecuritySettings, revocation_list=_revocation_list(table))
    table.finish()
    return settings


def _revocation_list(table: Table) -> Path | None:
    """A configured deny list must exist: a missing one would silently revoke nothing."""
    path = table.optional_path("revocation_list")
    if path is not None and not path.is_file():
        raise ConfigError(
            f'[security] revocation_list = "{path}": no such file (`aslora certs init` writes an empty '
            f"{REVOKED_FILE} beside {CA_CERT_FILE}; leave the key out to revoke nothing)"
        )
    return path
